"""``from_jax``: any JAX function ``fn(params, *inputs)`` into jq's graph form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ..graph.graph import Graph
from .context import Builder
from .errors import Unsupported, UnsupportedPrimitiveError
from .interpret import run_jaxpr
from .naming import param_paths, path_name, scope
from .patterns import compositions
from .recognise import avg_pools, batch_norms, flattens, fold_biases, means, prune, reshapes
from .values import Const, Val

_FN = "jq.from_jax"


def _check_params(params: Any, fn: str) -> list[np.ndarray]:
    """The leaves of ``params`` as arrays; a non-array leaf is an error naming its path."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    bad = [
        f"{path_name(p)} ({type(v).__name__})"
        for p, v in leaves
        if not (hasattr(v, "shape") and hasattr(v, "dtype")) and not isinstance(v, (int, float))
    ]
    if bad:
        raise TypeError(
            f"{fn}: every leaf of params must be an array (the model's weights and state); "
            f"got non-array leaves {bad}. Keep configuration out of params (close over it, or "
            "make it static)"
        )
    return [np.asarray(v) for _, v in leaves]


def _check_inputs(inputs: tuple, fn: str) -> list[np.ndarray]:
    if not inputs:
        raise TypeError(f"{fn}: give at least one example input (an array per model input)")
    out = []
    for i, x in enumerate(inputs):
        if not (hasattr(x, "shape") and hasattr(x, "dtype")):
            raise TypeError(
                f"{fn}: example input {i} must be an array, got {type(x).__name__} (pass one "
                "array per model input; pytrees of inputs are not supported)"
            )
        out.append(np.asarray(x))
    return out


def _trace(fn: Callable, params: Any, xs: list[np.ndarray], where: str):
    try:
        return jax.make_jaxpr(lambda p, *a: fn(p, *a))(params, *xs)
    except jax.errors.ConcretizationTypeError as e:
        raise ValueError(
            f"{where}: the function branches on (or converts to Python) array values, which a "
            f"static graph cannot represent: {str(e).splitlines()[0]}"
        ) from e


def _root_scope(jaxpr: Any) -> str:
    """The first name-stack entry of every top-level equation, if they all share one (a Linen
    model's root module): node names leave it out."""
    roots = {scope(e.source_info).split(".")[0] for e in jaxpr.eqns}
    return roots.pop() if len(roots) == 1 else ""


def from_jax(
    fn: Callable[..., Any], params: Any, *example_inputs: Any, name: str = _FN
) -> tuple[Graph, dict]:
    """Trace ``fn(params, *example_inputs)`` and convert it into a jq graph and its params.

    Kernel layers are the ``conv_general_dilated`` / ``dot_general`` equations with one operand
    computed from ``params`` alone: they become ``conv`` / ``linear`` nodes named after the
    params' owner (``{"conv": {"kernel": ...}}`` -> node ``conv``), with the kernel stored in
    jq's layout (``OIHW`` conv kernels, ``(out, in)`` linear kernels; output channels on axis
    0), and a following per-channel add as their bias. ``(x - mean) * s + b`` per channel is a
    ``batch_norm``. Calls (``jit``, ``custom_jvp_call``, ``custom_vjp_call``, ``remat``) are
    inlined; anything computed from params alone is evaluated now. Data keep the program's
    layout (NHWC stays NHWC at the inputs and outputs).

    Args:
      fn: ``fn(params, *inputs) -> array or pytree of arrays``, traceable by ``jax.make_jaxpr``.
      params: pytree of arrays (weights and state): the numbers the graph's params come from.
      *example_inputs: one array per model input (shapes and dtypes; values unused).
      name: the entry point named in error messages.

    Returns:
      ``(graph, params)``: a :class:`jq.Graph` whose inputs are ``x`` (one input) or ``x0,
      x1, ...`` and whose outputs are the flattened leaves of ``fn``'s result; ``params``
      ``{node: {param: np.ndarray}}``. ``jq.apply(graph, params, *inputs)`` equals
      ``fn(params, *inputs)`` for inputs of the example's shapes.

    Raises:
      TypeError: a non-array leaf in params, or a non-array example input.
      ValueError: ``fn`` branches on array values (not traceable to a static graph).
      UnsupportedPrimitiveError: primitives without a conversion, every one listed with its
        source line and a hint.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, jq
      >>> def mlp(p, x):
      ...     return jax.nn.relu(x @ p["fc"]["kernel"] + p["fc"]["bias"][None])
      >>> p = {"fc": {"kernel": np.ones((3, 2), np.float32), "bias": np.zeros(2, np.float32)}}
      >>> graph, params = jq.from_jax(mlp, p, np.zeros((4, 3), np.float32))
      >>> [(n.name, n.op) for n in graph.nodes]
      [('fc', 'linear'), ('relu', 'relu')]
      >>> params["fc"]["weight"].shape  # (out, in)
      (2, 3)
    """
    if not callable(fn):
        raise TypeError(f"{name}: fn must be callable as fn(params, *inputs), got {fn!r}")
    leaves = _check_params(params, name)
    xs = _check_inputs(example_inputs, name)
    closed = _trace(fn, params, xs, name)
    input_names = ("x",) if len(xs) == 1 else tuple(f"x{i}" for i in range(len(xs)))
    b = Builder(input_names, _root_scope(closed.jaxpr))
    args: list[Any] = [Const(v, (p,)) for v, p in zip(leaves, param_paths(params), strict=True)]
    args += [
        Val(n, tuple(range(x.ndim)), x.shape, x.dtype) for n, x in zip(input_names, xs, strict=True)
    ]
    consts = [Const(np.asarray(c), (), True) for c in closed.consts]
    outs = run_jaxpr(b, closed.jaxpr, consts, args)
    if b.problems:
        raise UnsupportedPrimitiveError(name, list(dict.fromkeys(b.problems)), kind="primitive use")
    out_names = tuple(
        b.const_node(o, tuple(range(o.value.ndim))) if isinstance(o, Const) else b.logical(o)
        for o in outs
    )
    graph = Graph(input_names, b.nodes, out_names, [x.shape for x in xs])
    params_out: dict = b.params
    passes = (reshapes, prune, fold_biases, batch_norms, means, avg_pools, flattens)
    for rewrite in (*passes, compositions, prune):
        graph, params_out = rewrite(graph, params_out)
    return graph, params_out


__all__ = ["Unsupported", "UnsupportedPrimitiveError", "from_jax"]
