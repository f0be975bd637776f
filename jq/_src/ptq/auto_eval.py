"""AUTO error method: per layer, keep the error method whose parameters give the best SQNR.

The PTQ pipeline runs every candidate error method's search (one compiled, vmapped search per
method and kind, as for a single method), then makes ONE extra compiled pass over the
calibration data with :func:`auto_sqnr`: each batch runs the float graph once, capturing the
values it needs, and evaluates, vmapped over the ``M`` methods, every quantized tensor's layer
output with each method's parameters. :func:`choose` keeps, per layer, the method with the
highest SQNR. ``auto_analysis`` records what each layer's choice saw, for the report.

What "the layer's output SQNR" measures (on the calibration data, against the float model,
with the layer's *float* inputs so that the layers are judged independently and in one pass):

- activation quantizer on value ``v``: ``10 log10(sum v^2 / sum (Q_m(v) - v)^2)``, ``Q_m`` the
  fake-quantizer with method ``m``'s range (what the quantized graph computes at ``v``).
- kernel of layer ``k`` (conv / linear / conv_transpose): ``y = k(x; W, b)`` against
  ``k(x; Wq_m, b_m)``, ``Wq_m`` the kernel fake-quantized with method ``m``'s thresholds and
  ``b_m`` its bias after bias correction: the error the quantized kernel adds to the layer's
  output, with the input statistics the layer really sees (weight-space MSE ignores them).

Ties (methods whose parameters coincide, common with power-of-two thresholds) go to the earlier
method of :data:`ACTIVATION_METHODS` / :data:`WEIGHTS_METHODS`, MSE first.

Reference: MCT 2.6.1 leaves the error method to the user (``QuantizationConfig``); per-layer
selection by a downstream measure follows the layer-wise calibration idea of e.g. Nagel et al.,
"A White Paper on Neural Network Quantization" (2021), §3.4 and §4.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..graph.apply import apply
from ..graph.graph import Graph
from ..graph.ops import get_op
from ..runtime.jit import jit
from ..select.enums import AUTO as AUTO
from ..select.enums import AutoErrorMethod as AutoErrorMethod
from ..select.enums import ErrorMethod
from ..select.enums import is_auto as is_auto
from ..select.quantizers import affine_fake_quant
from .data import Arrays, Shapes, accumulate

# Candidate methods in tie-break order (MSE, jq's default, first). HMSE needs Hessian scores:
# for weights jq computes them (autodiff); for activations it needs Hessian-weighted histograms,
# which would replace the plain ones the other methods use, so AUTO does not consider it there.
ACTIVATION_METHODS = (
    ErrorMethod.MSE,
    ErrorMethod.NOCLIPPING,
    ErrorMethod.MAE,
    ErrorMethod.LP,
    ErrorMethod.KL,
)
WEIGHTS_METHODS = ACTIVATION_METHODS + (ErrorMethod.HMSE,)

TIE_DB = 1e-6  # SQNRs closer than this (dB) count as equal; float32 sums differ by ~1e-7 dB


def candidate_methods(kind: str, *, hessian: bool = True) -> tuple[ErrorMethod, ...]:
    """The error methods AUTO compares for ``kind`` (``"weights"`` or ``"activation"``).

    Args:
      kind: ``"weights"`` or ``"activation"``.
      hessian: whether Hessian scores are available (weights: HMSE is included only then).

    Raises:
      ValueError: an unknown ``kind``.
    """
    if kind == "activation":
        return ACTIVATION_METHODS
    if kind == "weights":
        return WEIGHTS_METHODS if hessian else ACTIVATION_METHODS
    raise ValueError(f"candidate_methods: kind must be 'weights' or 'activation', got {kind!r}")


class KernelSpec(NamedTuple):
    """A kernel layer evaluated by :func:`auto_sqnr` (static, hashable).

    Attributes:
      name: the layer's node name (its output is the float reference).
      op: its op (``conv``, ``linear``, ``conv_transpose``).
      source: the value it reads (its float input).
      attrs: the node's attrs (sorted ``(key, value)`` pairs).
    """

    name: str
    op: str
    source: str
    attrs: tuple


class AutoSums(NamedTuple):
    """Signal and noise sums over the calibration data (float64, host arrays).

    Attributes:
      act_signal: ``(La,)`` ``sum v^2`` per activation; act_noise: ``(La, M)``.
      kernel_signal: ``(Lk,)`` ``sum y^2`` per kernel layer; kernel_noise: ``(Lk, Mk)``.
      n_batches: batches seen.
    """

    act_signal: np.ndarray
    act_noise: np.ndarray
    kernel_signal: np.ndarray
    kernel_noise: np.ndarray
    n_batches: int


def _act_sums(x: jax.Array, grids: jax.Array):
    """``sum x^2`` and, per method, ``sum (Q(x) - x)^2``; ``grids``: ``(M, 3)`` rows
    ``(scale, q_min, q_max)`` (the pipeline's ``fake_quant``)."""
    x = x.astype(jnp.float32)

    def noise(g):
        return jnp.sum(jnp.square(affine_fake_quant(x, g[0], g[1], g[2]) - x))

    return jnp.sum(jnp.square(x)), jax.vmap(noise)(grids)


def _kernel_sums(x, y, weights, biases, *, op: str, attrs: tuple):
    """``sum y^2`` and, per method, ``sum (k(x; Wq_m, b_m) - y)^2``; ``weights``: ``(M, ...)``,
    ``biases``: ``(M, O)``."""
    fn = get_op(op)

    def noise(w, b):
        return jnp.sum(jnp.square(fn({"weight": w, "bias": b}, x, **dict(attrs)) - y))

    return jnp.sum(jnp.square(y)), jax.vmap(noise)(weights, biases)


@functools.partial(jit, static_argnames=("graph", "act_values", "kernels"))
def _auto_step(
    params, act_grids, kernel_weights, kernel_biases, inputs, *, graph, act_values, kernels
):
    capture = tuple(
        dict.fromkeys(
            act_values + tuple(k.source for k in kernels) + tuple(k.name for k in kernels)
        )
    )
    _, acts = apply(graph, params, *inputs, capture=capture)
    a_sig, a_noise, k_sig, k_noise = [], [], [], []
    # A Python loop over layers (each has its own shapes); methods are vmapped inside.
    for i, v in enumerate(act_values):
        s, e = _act_sums(acts[v], act_grids[i])
        a_sig.append(s)
        a_noise.append(e)
    for j, k in enumerate(kernels):
        s, e = _kernel_sums(
            acts[k.source],
            acts[k.name],
            kernel_weights[j],
            kernel_biases[j],
            op=k.op,
            attrs=k.attrs,
        )
        k_sig.append(s)
        k_noise.append(e)
    return a_sig, a_noise, k_sig, k_noise


def auto_sqnr(
    graphs: Callable[[Shapes], Graph],
    params,
    batches: Iterable[Arrays],
    *,
    act_values: Sequence[str] = (),
    act_grids=None,
    kernels: Sequence[KernelSpec] = (),
    kernel_weights: Sequence = (),
    kernel_biases: Sequence = (),
    fn: str = "auto_sqnr",
) -> AutoSums:
    """One compiled pass over the calibration data: every method's layer-output noise.

    Args:
      graphs: the float graph for each tuple of input shapes (``Prepared.graphs``).
      params: the float params pytree.
      batches: the calibration batches, each a sequence of arrays (one per graph input).
      act_values: ``La`` quantized values to evaluate.
      act_grids: ``(La, M, 3)``: the ``fake_quant`` grid ``(scale, q_min, q_max)`` of each
        value under each of the ``M`` methods (``jq._src.select.quantizers.affine_grid``).
      kernels: ``Lk`` :class:`KernelSpec`.
      kernel_weights: ``Lk`` arrays ``(Mk, *weight.shape)``: each method's fake-quantized kernel.
      kernel_biases: ``Lk`` arrays ``(Mk, O)``: each method's (bias-corrected) bias; zeros when
        the layer has no bias and no correction.
      fn: name used in error messages.

    Returns:
      :class:`AutoSums` (sums over all batches, float64).

    Raises:
      ValueError: mismatched lengths, or no batch.

    Examples:
      >>> import numpy as np, jq
      >>> from jq._src.select.quantizers import affine_grid
      >>> g = jq.Graph(inputs=("x",), nodes=(jq.Node("r", "relu", ("x",)),), outputs=("r",))
      >>> grids = np.array([[affine_grid(8, threshold=t, signed=False) for t in (1.0, 4.0)]])
      >>> x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(4, 16)
      >>> sums = auto_sqnr(lambda shapes: g, {}, [(x,)], act_values=("r",), act_grids=grids)
      >>> choose(sums.act_signal, sums.act_noise)[0]  # threshold 1 beats 4 on values in [0, 1]
      array([0])
    """
    act_values = tuple(act_values)
    kernels = tuple(KernelSpec(*k) for k in kernels)
    act_grids, kw, kb = _auto_inputs(
        act_values, act_grids, kernels, kernel_weights, kernel_biases, fn
    )
    n_m = act_grids.shape[1]
    n_mk = kw[0].shape[0] if kw else 0
    zeros = AutoSums(
        np.zeros(len(act_values)),
        np.zeros((len(act_values), n_m)),
        np.zeros(len(kernels)),
        np.zeros((len(kernels), n_mk)),
        0,
    )

    step = functools.partial(
        _add_batch,
        params=params,
        arrays=(act_grids, kw, kb),
        act_values=act_values,
        kernels=kernels,
    )
    sums, count = accumulate(batches, graphs, step, zeros)
    if count == 0:
        raise ValueError(f"{fn}: the representative dataset yielded no batch")
    return sums._replace(n_batches=count)


def _add_batch(acc: AutoSums, graph: Graph, batch, *, params, arrays, act_values, kernels):
    """``acc`` plus one batch's sums (one compiled :func:`_auto_step`)."""
    act_grids, kw, kb = arrays
    inputs = tuple(jnp.asarray(np.asarray(a)) for a in batch)
    out = _auto_step(
        params, act_grids, kw, kb, inputs, graph=graph, act_values=act_values, kernels=kernels
    )
    s1, e1, s2, e2 = jax.device_get(out)
    if act_values:
        acc = acc._replace(
            act_signal=acc.act_signal + np.asarray(s1, np.float64),
            act_noise=acc.act_noise + np.asarray(e1, np.float64),
        )
    if kernels:
        acc = acc._replace(
            kernel_signal=acc.kernel_signal + np.asarray(s2, np.float64),
            kernel_noise=acc.kernel_noise + np.asarray(e2, np.float64),
        )
    return acc


def _auto_inputs(act_values, act_grids, kernels, kernel_weights, kernel_biases, fn: str):
    """:func:`auto_sqnr`'s grids, kernels and biases as arrays, their shapes checked."""
    if act_values:
        act_grids = jnp.asarray(act_grids, jnp.float32)
        if act_grids.ndim != 3 or act_grids.shape[0] != len(act_values) or act_grids.shape[2] != 3:
            raise ValueError(
                f"{fn}: act_grids must have shape ({len(act_values)}, M, 3), got "
                f"{tuple(act_grids.shape)}"
            )
    else:
        act_grids = jnp.zeros((0, 0, 3), jnp.float32)
    if not len(kernel_weights) == len(kernel_biases) == len(kernels):
        raise ValueError(
            f"{fn}: kernels, kernel_weights and kernel_biases must have one entry per layer; got "
            f"{len(kernels)}, {len(kernel_weights)}, {len(kernel_biases)}"
        )
    kw = [jnp.asarray(w) for w in kernel_weights]
    kb = [jnp.asarray(b, jnp.float32) for b in kernel_biases]
    return act_grids, kw, kb


def sqnr_db(signal, noise) -> np.ndarray:
    """``10 log10(signal / noise)`` elementwise (``inf`` where ``noise == 0``, ``-inf`` where
    ``signal == 0 < noise``)."""
    s = np.asarray(signal, np.float64)
    e = np.asarray(noise, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(s / e)
    db = np.where(e <= 0, np.inf, db)
    return np.where((s <= 0) & (e > 0), -np.inf, db)


def choose(signal, noise, *, tie_db: float = TIE_DB) -> tuple[np.ndarray, np.ndarray]:
    """Per layer, the method with the best SQNR; ties go to the earliest method.

    Args:
      signal: ``(L,)`` signal sums; noise: ``(L, M)`` noise sums (methods in preference order).
      tie_db: SQNRs within this many dB of the best count as equal.

    Returns:
      ``(choice, db)``: ``choice`` ``(L,)`` int method indices; ``db`` ``(L, M)`` SQNR in dB
      (a non-finite noise, e.g. from a NaN range, counts as ``-inf``).

    Raises:
      ValueError: shapes that do not match.

    Examples:
      >>> choice, db = choose(np.array([4.0]), np.array([[1.0, 0.5, 2.0]]))
      >>> choice, db.round(2)
      (array([1]), array([[6.02, 9.03, 3.01]]))
    """
    s = np.asarray(signal, np.float64)
    e = np.asarray(noise, np.float64)
    if e.ndim != 2 or s.shape != e.shape[:1]:
        raise ValueError(
            f"choose: signal must be (L,) and noise (L, M); got {s.shape} and {e.shape}"
        )
    db = sqnr_db(s[:, None], e)
    db = np.where(np.isnan(e) | np.isnan(db), -np.inf, db)
    if db.shape[1] == 0:
        return np.zeros(len(s), int), db
    best = np.max(db, axis=1, keepdims=True)
    close = (db >= best - tie_db) | (db == best)  # the latter catches inf == inf
    return np.argmax(close, axis=1), db
