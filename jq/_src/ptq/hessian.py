"""Hessian scores for HMSE from JAX autodiff (MCT 2.6.1's ``_compute_hessian_for_hmse`` in
``error_functions.py``, ``mct/core/common/hessian``).

Weights: for each sample ``x`` (batch size 1), the per-element score of a kernel ``W`` is
``diag(J^T J)`` with ``J = d y / d W`` and ``y`` every model output flattened and concatenated
(``D`` values). MCT estimates it as ``E_v[(J^T v)^2]`` over Rademacher vectors ``v``
(Hutchinson), one reverse pass per draw, as a running mean that stops after more than
``min_iter`` draws once every layer's mean score moved by less than ``tol`` (relative) in the
last draw (100 draws at most, 10 minimum, tolerance 1e-3). jq computes the same estimator --
the same draws give the same numbers up to float rounding, under the same stopping rule,
applied draw by draw -- at lower cost:

- **Draws in batches.** One reverse pass carries ``DRAWS_PER_PASS`` draws (``jax.vmap`` of the
  vjp over a stack of ``v``, the forward residuals shared) and yields, for every scored layer
  ``l``, the cotangent of its output ``d_l = (dy/dz_l)^T v`` (a zero-valued hook after the
  layer). The stopping rule is evaluated per draw inside the pass; draws after the stop, or
  past ``max_iter``, are masked out, so each sample keeps exactly the draws MCT's loop would.
- **Per-layer algebra instead of per-draw weight gradients.** A conv (one group) or linear
  layer is ``z = W X`` with ``X`` its input patches (``CT x P``, ``P`` output positions), so
  the gradient of one draw is ``g = d X^T`` (``O x CT``). Where ``P <= GRAM_MAX_POSITIONS``
  (resnet18's layers 2-4 and fc at 64x64) the draws are accumulated as per-channel Gram
  matrices ``G_o = sum_v d_o d_o^T`` (``P x P``) and contracted once per sample:
  ``sum_v g^2 = sum_pq X_p X_q G_pq`` -- the same sum, without materialising a weight-sized
  gradient per draw; each draw's layer mean (for the stopping rule) is
  ``sum_o d_o^T (X^T X) d_o / size``. (Squaring and summing 8 vmapped weight gradients of
  a 512-channel 3x3 conv on 2x2 maps took 397 ms on XLA:CPU, the Gram form 2.3 ms.) Other
  conv/linear layers form ``g`` by one dot per pass; any other kernel layer takes the vjp of
  its own op at its captured input.
- **Convolutions as dots.** Convolutions with at most ``IM2COL_MAX_POSITIONS`` output
  positions run as patches and one dot in the scoring graph: XLA:CPU's convolution is 30-75x
  slower there (a 3x3, 512-channel conv on 2x2 maps, batch 1: 23 ms against 0.33 ms).
- **Small outputs are exact.** When ``D <= max_iter`` the ``D`` unit vectors replace the
  random draws: the exact diagonal in at most ``max_iter`` draws, the estimator's limit.

Samples run one after the other (each with its own stopping rule), in compiled calls of one
forward and ``chunk // DRAWS_PER_PASS`` passes (1 to ``MAX_PASSES_PER_CALL``; the progress
bar's step), unrolled: under an XLA:CPU ``while_loop`` the same pass ran 2-4x slower. On
resnet18 the rule never stops early (all 16 samples, old code and new, ran 100 draws), so the
speed comes from cheaper draws, not fewer.

Error against the exact diagonal (``jax.jacrev``; :func:`exact_weight_diag` is the test
oracle), measured on a small conv net with 154 outputs (``tests/ptq/test_hessian.py``; c1-c3 and a
depthwise conv, a linear head), defaults (16 samples, MCT's rule, which ran all 100 draws):
mean |est - exact| / mean exact per layer 0.025-0.036 for the convs over 3 seeds (the previous
one-draw-per-pass code: 0.025-0.036), 0 for the head (its ``g^2`` does not depend on ``v``);
the per-layer totals within 1.5 %. The test bounds it at 0.06.

Cost (``benchmarks/bench_hessian.py``: resnet18 at 64x64, 16 samples, 21 kernels, 100 draws
each; 2 cores shared with other jobs, old and new back to back): at load 4-5, first call 40 s
(about 15 s of it compilation), again 25 s, against 316 s / 408 s for the previous code (7.9x
/ 16.3x; in CPU seconds 11.5x / 16.7x); at load 7-9, 58 s / 32 s against 590 s / 506 s.

Activations (HMSE as ``activation_error_method``) are scored during statistics collection
(``jq/_src/ptq/calibrate.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..graph.apply import apply
from ..graph.graph import Graph, Node
from ..graph.ops import get_op
from ..graph.ops.hooks import HESSIAN_CONV_OP as _CONV_OP
from ..graph.ops.hooks import HESSIAN_PROBE_OP as _PROBE_OP
from ..graph.ops.hooks import conv_patches as _taps
from ..runtime.jit import jit

MAX_ITER = 100  # MCT HESSIAN_NUM_ITERATIONS
MIN_ITER = 10  # MCT MIN_HESSIAN_ITER: the stop test runs for draws j > MIN_ITER (0-based)
TOL = 1e-3  # MCT HESSIAN_COMP_TOLERANCE
N_SAMPLES = 16  # MCT NUM_QPARAM_HESSIAN_SAMPLES
# Draws per reverse pass. resnet18 at 64x64, 16 samples, steady state on 2 loaded cores:
# 4 / 8 / 16 draws took 21 / 22-29 / 27 s (noise about as large as the differences); 8 wastes
# 4 of 104 draws at 100 (16: 12 of 112).
DRAWS_PER_PASS = 8
# Gram accumulation costs O P^2 per draw plus CT O P^2 once per sample, against O CT P per
# draw for explicit gradients: the better choice up to P of about the number of draws.
GRAM_MAX_POSITIONS = 64
# resnet18 at 64x64, one pass of 8 draws: convs as dots up to 16 / 64 / 256 / 1024 output
# positions took 59 / 67 / 83 / 92 ms (XLA's own conv is better from 8x8 maps up).
IM2COL_MAX_POSITIONS = 16
# Passes per compiled call are unrolled (compile time grows with them): at most this many.
MAX_PASSES_PER_CALL = 4

_PROBE_SUFFIX = "#hessian"


@dataclasses.dataclass(frozen=True)
class _Layer:
    """How one kernel is scored (static, hashable)."""

    name: str
    node: Node  # the layer's node in the scoring graph
    kind: str  # "gram" | "dot" (conv/linear in matrix form) | "vjp" (any other op)
    out_shape: tuple[int, ...]
    out_dtype: str
    weight_shape: tuple[int, ...]
    positions: int  # P (matrix kinds)


class _State(NamedTuple):
    acc: dict  # layer -> Gram (O, P, P) | sum of g^2 (weight shape)
    total: jax.Array  # (L,) sum over kept draws of each layer's mean g^2
    prev: jax.Array  # (L,) running mean after the last kept draw
    j: jax.Array  # () draws kept
    done: jax.Array  # () stopped


def _outputs_flat(graph, params, layers, ws, xs):
    p = dict(params)
    for name in layers:
        p[name] = {**params[name], "weight": ws[name]}
    out = apply(graph, p, *xs)
    outs = out if isinstance(out, tuple) else (out,)
    return jnp.concatenate([jnp.ravel(o) for o in outs])


def _scoring_graph(graph: Graph, layers: Sequence[str], out_shapes: dict) -> Graph:
    """``graph`` with small convs as dots and a ``ptq_hessian_probe`` hook after each layer."""
    hooked = set(layers)
    rename = {n: n + _PROBE_SUFFIX for n in layers}
    nodes = []
    for n in graph.nodes:
        if any(i in hooked for i in n.inputs):
            n = n.replace(inputs=tuple(rename.get(i, i) for i in n.inputs))
        attrs = dict(n.attrs)
        if (
            n.op == "conv"
            and attrs.get("groups") == 1
            and n.name in out_shapes
            and math.prod(out_shapes[n.name][2:]) <= IM2COL_MAX_POSITIONS
        ):
            n = n.replace(op=_CONV_OP)
        nodes.append(n)
        if n.name in hooked:
            nodes.append(Node(rename[n.name], _PROBE_OP, (n.name,)))
    outputs = tuple(rename.get(o, o) for o in graph.outputs)
    return graph.replace(nodes=tuple(nodes), outputs=outputs)


def _plan(graph: Graph, params, xs, layers: tuple[str, ...], fn: str):
    """The scoring graph, one :class:`_Layer` per scored kernel and the number of outputs."""
    node_names = {n.name for n in graph.nodes}
    missing = [n for n in layers if n not in node_names]
    if missing:
        raise ValueError(f"{fn}: layers {missing} are not nodes of the graph")
    no_w = [n for n in layers if "weight" not in params.get(n, {})]
    if no_w:
        raise ValueError(f"{fn}: layers {no_w} have no 'weight' param")
    convs = tuple(n.name for n in graph.nodes if n.op == "conv")
    specs = [jax.ShapeDtypeStruct(a.shape[1:], a.dtype) for a in xs]
    names = tuple(dict.fromkeys(layers + convs))
    out, shapes = jax.eval_shape(lambda p, *x: apply(graph, p, *x, capture=names), params, *specs)
    n_out = sum(math.prod(o.shape) for o in jax.tree.leaves(out))
    out_shapes = {k: tuple(v.shape) for k, v in shapes.items()}
    dtypes = {k: str(v.dtype) for k, v in shapes.items()}
    sgraph = _scoring_graph(graph, layers, out_shapes)
    plan = []
    for name in layers:
        node = sgraph.node(name)
        attrs = dict(node.attrs)
        w_shape = tuple(params[name]["weight"].shape)
        out = out_shapes[name]
        matrix = (node.op in ("conv", _CONV_OP) and attrs.get("groups") == 1) or (
            node.op == "linear" and len(w_shape) == 2
        )
        if matrix:
            positions = math.prod(out) // w_shape[0]
            kind = "gram" if positions <= GRAM_MAX_POSITIONS else "dot"
        else:
            positions, kind = 0, "vjp"
        plan.append(_Layer(name, node, kind, out, dtypes[name], w_shape, positions))
    return sgraph, tuple(plan), n_out


def _x_matrix(layer: _Layer, x):
    """``X`` (CT, P): the layer input as patches (conv) or rows (linear)."""
    if layer.node.op == "linear":
        return jnp.reshape(x, (-1, x.shape[-1])).T
    attrs = dict(layer.node.attrs)
    pt = _taps(x, layer.weight_shape[2:], attrs["stride"], attrs["padding"], attrs["dilation"])
    pt = jnp.moveaxis(pt, 0, 2)  # (C, T, N, *out)
    return jnp.reshape(pt, (pt.shape[0] * pt.shape[1], -1))


def _d_matrix(layer: _Layer, delta):
    """``d`` (k, O, P) from ``k`` cotangents of the layer output."""
    k, o = delta.shape[0], layer.weight_shape[0]
    if layer.node.op == "linear":
        return jnp.swapaxes(jnp.reshape(delta, (k, -1, o)), 1, 2)
    return jnp.reshape(jnp.swapaxes(delta, 1, 2), (k, o, -1))


def _weight_vjp(layer: _Layer, lp, ins):
    """The vjp of the layer's own op w.r.t. its weight, at its captured inputs."""
    op, attrs = get_op(layer.node.op), dict(layer.node.attrs)
    return jax.vjp(lambda w: op({**lp, "weight": w}, *ins, **attrs), lp["weight"])[1]


def _forward(graph, plan, params, x):
    """The forward, its vjp from output cotangents to every layer's output cotangent, and per
    layer what the draws need: ``X`` and ``X^T X`` (Gram), ``X`` (dot), the weight vjp (vjp).
    """
    caps = tuple(dict.fromkeys(i for lay in plan for i in lay.node.inputs))

    def f(deltas):
        p = dict(params)
        for lay in plan:
            p[lay.name + _PROBE_SUFFIX] = {"delta": deltas[lay.name]}
        out, acts = apply(graph, p, *x, capture=caps)
        outs = out if isinstance(out, tuple) else (out,)
        return jnp.concatenate([jnp.ravel(o) for o in outs]), acts

    zeros = {lay.name: jnp.zeros(lay.out_shape, lay.out_dtype) for lay in plan}
    y, vjp_fn, acts = jax.vjp(f, zeros, has_aux=True)
    extra = {}
    for lay in plan:
        ins = [acts[i] for i in lay.node.inputs]
        if lay.kind == "vjp":
            extra[lay.name] = _weight_vjp(lay, params[lay.name], ins)
        else:
            xm = _x_matrix(lay, ins[0])
            extra[lay.name] = (xm, xm.T @ xm) if lay.kind == "gram" else (xm,)
    return y, vjp_fn, extra


def _draw_stats(plan, extra, deltas):
    """Per layer: each draw's mean ``g^2`` (k,) and what accumulates (per draw)."""
    means, parts = [], {}
    for lay in plan:
        d = deltas[lay.name]
        size = math.prod(lay.weight_shape)
        if lay.kind == "vjp":
            g = jax.vmap(lambda c, f=extra[lay.name]: f(c)[0])(d)
            sq = jnp.square(g)
            means.append(jnp.sum(jnp.reshape(sq, (sq.shape[0], -1)), axis=1) / size)
            parts[lay.name] = sq
            continue
        dm = _d_matrix(lay, d)
        if lay.kind == "gram":
            ata = extra[lay.name][1]
            means.append(jnp.einsum("kop,pq,koq->k", dm, ata, dm) / size)
            parts[lay.name] = dm
        else:
            sq = jnp.square(jnp.einsum("kop,cp->koc", dm, extra[lay.name][0]))
            means.append(jnp.sum(sq, axis=(1, 2)) / size)
            parts[lay.name] = sq
    return jnp.stack(means, axis=1), parts


def _accumulate(plan, acc, parts, keep):
    out = {}
    for lay in plan:
        p = parts[lay.name]
        if lay.kind == "gram":
            out[lay.name] = acc[lay.name] + jnp.einsum("k,kop,koq->opq", keep, p, p)
        else:
            s = jnp.tensordot(keep, p, axes=1)
            out[lay.name] = acc[lay.name] + jnp.reshape(s, acc[lay.name].shape)
    return out


def _stop(m, total, prev, j, *, max_iter, min_iter, tol):
    """MCT's rule for the ``k`` draws of one pass, draw by draw: which draws are kept."""
    k = m.shape[0]
    idx = j + jnp.arange(k)  # 0-based draw numbers
    run = (total[None] + jnp.cumsum(m, axis=0)) / (idx + 1).astype(m.dtype)[:, None]
    before = jnp.concatenate([prev[None], run[:-1]], axis=0)
    delta = jnp.max(jnp.abs(run - before) / (jnp.abs(run) + 1e-6), axis=1)
    stop = (idx > min_iter) & (delta < tol)
    earlier = jnp.cumsum(stop) - stop  # stops strictly before each draw
    keep = (idx < max_iter) & (earlier == 0)
    n_new = jnp.sum(keep)
    done = jnp.any(stop & keep) | (j + n_new >= max_iter)
    prev = jnp.where(n_new > 0, run[jnp.maximum(n_new - 1, 0)], prev)
    total = total + jnp.sum(jnp.where(keep[:, None], m, 0), axis=0)
    return keep.astype(m.dtype), total, prev, j + n_new, done


@functools.partial(jit, static_argnames=("graph", "plan", "exact"))
def _run_passes(params, x, state, v, rule, *, graph, plan, exact):
    """One forward and ``v.shape[0]`` reverse passes of ``v.shape[1]`` draws each.

    Args:
      v: (passes, k, D) output cotangents: Rademacher draws, or unit vectors (``exact``: every
        draw is kept, no stopping rule).
      rule: ``(max_iter, min_iter, tol)`` as arrays (traced: other settings, same program).
    """
    max_iter, min_iter, tol = rule
    y, vjp_fn, extra = _forward(graph, plan, params, x)
    s = state
    # Passes unrolled in Python: inside an XLA:CPU while loop the same pass ran 2-4x slower.
    for vp in v:
        (deltas,) = jax.vmap(vjp_fn)(vp.astype(y.dtype))
        m, parts = _draw_stats(plan, extra, deltas)
        if exact:
            s = s._replace(acc=_accumulate(plan, s.acc, parts, jnp.ones(m.shape[0], m.dtype)))
            continue
        keep, total, prev, j, done = _stop(
            m, s.total, s.prev, s.j, max_iter=max_iter, min_iter=min_iter, tol=tol
        )
        keep = jnp.where(s.done, 0.0, keep)
        s = _State(
            _accumulate(plan, s.acc, parts, keep),
            jnp.where(s.done, s.total, total),
            jnp.where(s.done, s.prev, prev),
            jnp.where(s.done, s.j, j),
            s.done | done,
        )
    return s, _gram_inputs(plan, extra)


def _gram_inputs(plan, extra):
    return {lay.name: extra[lay.name][0] for lay in plan if lay.kind == "gram"}


@functools.partial(jit, static_argnames=("plan",))
def _finish(acc, xms, count, *, plan):
    """Scores of one sample from the sums over ``count`` draws (and ``X`` of Gram layers)."""
    out = {}
    for lay in plan:
        a = acc[lay.name]
        if lay.kind == "gram":
            xm = xms[lay.name]
            pp = lay.positions * lay.positions
            xx = jnp.reshape(xm[:, :, None] * xm[:, None, :], (xm.shape[0], pp))
            # sum_pq X_p X_q G_pq is a sum of squares: clip float cancellation below zero
            a = jnp.maximum(jnp.reshape(a, (a.shape[0], pp)) @ xx.T, 0.0)
        out[lay.name] = jnp.reshape(a, lay.weight_shape) / count
    return out


def _zeros_acc(plan, dtype):
    return {
        lay.name: jnp.zeros(
            (lay.weight_shape[0], lay.positions, lay.positions)
            if lay.kind == "gram"
            else lay.weight_shape,
            dtype,
        )
        for lay in plan
    }


def _check_inputs(
    samples, layers, max_iter, min_iter, tol, chunk, fn: str
) -> tuple[tuple[str, ...], tuple[jax.Array, ...]]:
    """``(layers without repeats, sample arrays)``; raises ``ValueError`` on bad settings."""
    names = tuple(dict.fromkeys(layers))
    if not names:
        raise ValueError(f"{fn}: layers is empty")
    if not (isinstance(max_iter, int) and max_iter >= 1 and isinstance(chunk, int) and chunk >= 1):
        raise ValueError(f"{fn}: max_iter and chunk must be ints >= 1")
    if not (isinstance(min_iter, int) and min_iter >= 0 and float(tol) >= 0):
        raise ValueError(f"{fn}: min_iter must be an int >= 0 and tol >= 0")
    xs = tuple(jnp.asarray(s) for s in samples)
    if not xs or xs[0].shape[0] == 0:
        raise ValueError(f"{fn}: no samples")
    if any(a.shape[0] != xs[0].shape[0] for a in xs):
        raise ValueError(f"{fn}: every input needs the same number of samples")
    return names, xs


def _progress_bar(total: int):
    """A tqdm bar of ``total`` draws, or ``None`` without tqdm (it is optional)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="jq Hessian scores", leave=False)


def weight_scores(
    graph: Graph,
    params,
    samples: Sequence[np.ndarray],
    layers: Sequence[str],
    *,
    max_iter: int = MAX_ITER,
    min_iter: int = MIN_ITER,
    tol: float = TOL,
    chunk: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, jax.Array]:
    """Per-element HMSE scores of kernels, averaged over samples (what HMSE uses).

    Args:
      graph: the float graph (batch norms folded) for inputs of batch size 1.
      params: its params; ``params[layer]["weight"]`` is the kernel of each layer.
      samples: one array per graph input, each ``(S, 1, ...)``: ``S`` samples of batch 1.
      layers: names of the layers whose kernels are scored.
      max_iter, min_iter, tol: Hutchinson draws and MCT's stopping rule (see module doc);
        with at most ``max_iter`` outputs the diagonal is exact instead.
      chunk: draws per compiled call (the progress bar's step), rounded down to whole
        passes of ``DRAWS_PER_PASS``, 1 to ``MAX_PASSES_PER_CALL`` passes (unrolled: compile
        time grows with them).
      seed: seed of the Rademacher draws.
      progress: tqdm progress bar.

    Returns:
      ``{layer: scores}``, each the kernel's shape: the mean over samples of the estimated
      ``diag(J^T J)`` (non-negative).

    Raises:
      ValueError: no layers, unknown layers or layers without a weight, no samples, or bad
        iteration settings.

    Examples:
      A linear layer ``y = W x``: ``d y_o / d W_oi = x_i``, so the scores are the mean of
      ``x_i^2`` over the samples (exact: 2 outputs).

      >>> import numpy as np, jq
      >>> g = jq.Graph(inputs=("x",), nodes=(jq.Node("fc", "linear", ("x",)),), outputs=("fc",))
      >>> p = {"fc": {"weight": np.ones((2, 3), np.float32), "bias": np.zeros(2, np.float32)}}
      >>> x = np.arange(6, dtype=np.float32).reshape(2, 1, 3)  # 2 samples of batch 1
      >>> s = weight_scores(g, p, [x], ["fc"], progress=False)
      >>> np.asarray(s["fc"])
      array([[ 4.5,  8.5, 14.5],
             [ 4.5,  8.5, 14.5]], dtype=float32)
      >>> qp = jq.weights_qparams(p["fc"]["weight"], error_method="hmse", hessian=s["fc"])
    """
    fn = "weight_scores"
    names, xs = _check_inputs(samples, layers, max_iter, min_iter, tol, chunk, fn)
    n = xs[0].shape[0]
    sgraph, plan, n_out = _plan(graph, params, xs, names, fn)
    sched = _schedule(n_out, max_iter, chunk)
    bar = _progress_bar(n * sched.per_sample) if progress else None
    rule = (jnp.int32(max_iter), jnp.int32(min_iter), jnp.float32(tol))
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    total: dict[str, jax.Array] = {}
    for s in range(n):
        x = tuple(a[s] for a in xs)
        one = _sample_scores(params, x, keys[s], rule, sched, bar, graph=sgraph, plan=plan)
        total = jax.tree.map(jnp.add, total, one) if total else one
    if bar is not None:
        bar.close()
    return {name: v / n for name, v in total.items()}


class _Schedule(NamedTuple):
    """How one sample's draws run: ``passes`` passes of ``DRAWS_PER_PASS`` draws per compiled
    call; with ``exact``, ``calls`` calls over the ``units`` (the ``n_out`` unit vectors)."""

    exact: bool
    passes: int
    calls: int
    units: jax.Array | None
    n_out: int
    per_sample: int  # draws per sample at most (the progress bar's unit)


def _schedule(n_out: int, max_iter: int, chunk: int) -> _Schedule:
    k = DRAWS_PER_PASS
    exact = n_out <= max_iter
    passes = min(max(1, min(chunk, n_out if exact else max_iter) // k), MAX_PASSES_PER_CALL)
    if not exact:
        return _Schedule(False, passes, 0, None, n_out, max_iter)
    # The D unit vectors, padded with zero rows (which add nothing).
    calls = -(-n_out // (passes * k))
    units = jnp.eye(calls * passes * k, n_out, dtype=jnp.float32)
    units = jnp.reshape(units, (calls, passes, k, n_out))
    return _Schedule(True, passes, calls, units, n_out, n_out)


def _sample_scores(params, x, key, rule, sched: _Schedule, bar, *, graph, plan):
    """One sample's scores: compiled calls of draws until MCT's rule stops (or the exact
    diagonal's unit vectors run out)."""
    k, n_out = DRAWS_PER_PASS, sched.n_out
    zero = jnp.zeros(len(plan), jnp.float32)
    state = _State(_zeros_acc(plan, jnp.float32), zero, zero, jnp.int32(0), jnp.bool_(False))
    steps = 0
    for c in itertools.count():
        if sched.units is not None:  # exact
            units = sched.units[c]
            state, xms = _run_passes(
                params, x, state, units, rule, exact=True, graph=graph, plan=plan
            )
            done, new = c + 1 == sched.calls, min(n_out, (c + 1) * sched.passes * k)
        else:
            subs = []
            for _ in range(sched.passes):  # one key per pass: the draws do not depend on chunk
                key, sub = jax.random.split(key)
                subs.append(sub)
            v = jnp.stack([jax.random.rademacher(u, (k, n_out), jnp.float32) for u in subs])
            state, xms = _run_passes(params, x, state, v, rule, exact=False, graph=graph, plan=plan)
            done, new = bool(state.done), int(state.j)
        if bar is not None:
            bar.update((sched.per_sample if done else new) - steps)
        steps = new
        if done:
            break
    count = jnp.float32(1) if sched.exact else state.j.astype(jnp.float32)
    return _finish(state.acc, xms, count, plan=plan)


def exact_weight_diag(graph: Graph, params, x: Sequence[jax.Array], layer: str) -> jax.Array:
    """Exact ``diag(J^T J)`` of one kernel for one sample, from ``jax.jacrev`` (a test oracle).

    Args:
      graph, params: as in :func:`weight_scores`.
      x: one array per graph input (batch 1).
      layer: the layer.

    Returns:
      The kernel's shape: ``sum_d (d y_d / d W)^2``.
    """
    w = params[layer]["weight"]
    jac = jax.jacrev(lambda w: _outputs_flat(graph, params, (layer,), {layer: w}, tuple(x)))(w)
    return jnp.sum(jnp.square(jac), axis=0)
