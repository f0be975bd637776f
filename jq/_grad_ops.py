"""Reverse-mode-friendly twins of graph ops, for the graphs jq differentiates (HMSE scores).

``max_pool`` and ``avg_pool`` of ``jq/_ops.py`` pass their ``lax.reduce_window`` init value as
a JAX array; under ``jax.jit`` that array is traced, JAX cannot recognise the max/add monoid,
and the generic ``reduce_window`` it falls back to has no VJP ("Linearization failed ..."). The
twins below pass a Python scalar, which selects ``reduce_window_max`` / ``reduce_window_sum``
(both differentiable); otherwise they call the original ops. :func:`differentiable_graph`
swaps them in. Remove once ``jq/_ops.py`` passes Python scalars itself.
"""

from __future__ import annotations

from jax import lax

from . import _ops
from ._graph import Graph
from ._ops import get_op, register_op

_TWINS = {"max_pool": "ptq_grad_max_pool", "avg_pool": "ptq_grad_avg_pool"}


@register_op("ptq_grad_max_pool")
def _max_pool(params, x, *, kernel_size, stride, padding, dilation, ceil_mode):
    """``max_pool`` with a Python ``-inf`` init (differentiable under jit)."""
    pads = _ops._pool_pads(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    return lax.reduce_window(
        x,
        -float("inf"),
        lax.max,
        (1, 1) + tuple(kernel_size),
        (1, 1) + tuple(stride),
        ((0, 0), (0, 0)) + tuple(pads),
        window_dilation=(1, 1) + tuple(dilation),
    )


@register_op("ptq_grad_avg_pool")
def _avg_pool(params, x, **attrs):
    """``avg_pool`` as a differentiable window sum over the original op's divisor."""
    kernel, stride = tuple(attrs["kernel_size"]), tuple(attrs["stride"])
    nd = len(kernel)
    pads = _ops._pool_pads(
        x.shape[2:], kernel, stride, attrs["padding"], (1,) * nd, attrs["ceil_mode"]
    )
    window = ((1, 1) + kernel, (1, 1) + stride, ((0, 0), (0, 0)) + tuple(pads))
    total = lax.reduce_window(x, 0.0, lax.add, *window)
    # The divisor does not depend on x: window sums of ones over the original op's averages
    # of ones (no tangent flows through it).
    ones = lax.full_like(x, 1.0)
    divisor = lax.reduce_window(ones, 0.0, lax.add, *window) / get_op("avg_pool")(
        params, ones, **attrs
    )
    return total / lax.stop_gradient(divisor)


def differentiable_graph(graph: Graph) -> Graph:
    """``graph`` with pooling ops replaced by their differentiable twins (same values)."""
    if not any(n.op in _TWINS for n in graph.nodes):
        return graph
    nodes = tuple(n.replace(op=_TWINS[n.op]) if n.op in _TWINS else n for n in graph.nodes)
    return graph.replace(nodes=nodes)
