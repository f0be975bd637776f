"""Hessian scores for HMSE from JAX autodiff (reference §4).

Weights (§4.1): for each sample ``x`` (batch size 1), the per-element score of a kernel ``W`` is
``diag(J^T J)`` with ``J = d y / d W`` and ``y`` every model output flattened and concatenated:
``E_v[(J^T v)^2]`` over Rademacher vectors ``v`` (Hutchinson). ``J^T v`` is one reverse-mode
pass (``jax.vjp``); the forward runs once per sample and its residuals are reused by every draw.
Draws are averaged as a running mean; after more than ``min_iter`` draws the estimate stops
once every layer's mean score moved by less than ``tol`` (relative) in the last draw -- MCT's
rule (100 draws at most, 10 minimum, tolerance 1e-3). Samples run one after the other under
``lax.map`` (each with its own stopping rule); draws run in chunks under ``lax.while_loop`` (a
progress bar advances per chunk).

Activations (§4.3) are scored during statistics collection (``jq/_calibrate.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._apply import apply
from ._graph import Graph

MAX_ITER = 100  # MCT HESSIAN_NUM_ITERATIONS
MIN_ITER = 10  # MCT MIN_HESSIAN_ITER: the stop test runs for draws j > MIN_ITER (0-based)
TOL = 1e-3  # MCT HESSIAN_COMP_TOLERANCE
N_SAMPLES = 16  # MCT NUM_QPARAM_HESSIAN_SAMPLES


class _State(NamedTuple):
    scores: dict  # layer -> (S, *kernel): running mean of (J^T v)^2 per sample
    prev: jax.Array  # (S, L): per-layer mean score after the last draw
    j: jax.Array  # (S,) draws done
    done: jax.Array  # (S,) stopped
    key: jax.Array  # (S, 2) per-sample keys


def _outputs_flat(graph, params, layers, ws, xs):
    p = dict(params)
    for name in layers:
        p[name] = {**params[name], "weight": ws[name]}
    out = apply(graph, p, *xs)
    outs = out if isinstance(out, tuple) else (out,)
    return jnp.concatenate([jnp.ravel(o) for o in outs])


@functools.partial(
    jax.jit, static_argnames=("graph", "layers", "chunk", "max_iter", "min_iter", "tol")
)
def _run_chunk(params, xs, state, *, graph, layers, chunk, max_iter, min_iter, tol):
    ws = {name: params[name]["weight"] for name in layers}

    def one(scores, prev, j, done, key, x):
        y, vjp_fn = jax.vjp(lambda w: _outputs_flat(graph, params, layers, w, x), ws)

        def cond(c):
            _, _, j, done, _, steps = c
            return (~done) & (steps < chunk) & (j < max_iter)

        def body(c):
            scores, prev, j, done, key, steps = c
            key, sub = jax.random.split(key)
            v = jax.random.rademacher(sub, y.shape, y.dtype)
            (g,) = vjp_fn(v)
            jf = j.astype(y.dtype)
            scores = {n: (jf * scores[n] + jnp.square(g[n])) / (jf + 1) for n in layers}
            mean = jnp.stack([jnp.mean(scores[n]) for n in layers])
            delta = jnp.max(jnp.abs(mean - prev) / (jnp.abs(mean) + 1e-6))
            done = (j > min_iter) & (delta < tol)
            return scores, mean, j + 1, done, key, steps + 1

        out = lax.while_loop(cond, body, (scores, prev, j, done, key, jnp.int32(0)))
        return out[:5]

    # Each sample is a batch of one, run one after the other (lax.map): under vmap the
    # per-sample weight gradients become batch-grouped convolutions, slower on XLA:CPU
    # (resnet18 at 64x64, 16 samples x 100 draws: 207 s against 321 s, measured under
    # different loads).
    res = lax.map(lambda a: one(*a), (state.scores, state.prev, state.j, state.done, state.key, xs))
    return _State(*res)


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
    """Per-element HMSE scores of kernels, averaged over samples (what HMSE uses, §4.1).

    Args:
      graph: the float graph (batch norms folded) for inputs of batch size 1.
      params: its params; ``params[layer]["weight"]`` is the kernel of each layer.
      samples: one array per graph input, each ``(S, 1, ...)``: ``S`` samples of batch 1.
      layers: names of the layers whose kernels are scored.
      max_iter, min_iter, tol: Hutchinson draws and MCT's stopping rule (see module doc).
      chunk: draws per compiled ``lax.while_loop`` call (the progress bar's step).
      seed: seed of the Rademacher draws.
      progress: tqdm progress bar.

    Returns:
      ``{layer: scores}``, each the kernel's shape: the mean over samples of the estimated
      ``diag(J^T J)``.

    Raises:
      ValueError: no layers, no samples, or bad iteration settings.

    Example::

        s = weight_scores(g1, params, [x[:16, None]], ["conv1", "fc"])
        qp = jq.weights_qparams(w, error_method="hmse", hessian=s["conv1"])
    """
    fn = "weight_scores"
    layers = tuple(layers)
    if not layers:
        raise ValueError(f"{fn}: layers is empty")
    if not (isinstance(max_iter, int) and max_iter >= 1 and isinstance(chunk, int) and chunk >= 1):
        raise ValueError(f"{fn}: max_iter and chunk must be ints >= 1")
    xs = tuple(jnp.asarray(s) for s in samples)
    if not xs or xs[0].shape[0] == 0:
        raise ValueError(f"{fn}: no samples")
    n = xs[0].shape[0]
    ws = {name: params[name]["weight"] for name in layers}
    state = _State(
        scores={k: jnp.zeros((n,) + w.shape, w.dtype) for k, w in ws.items()},
        prev=jnp.zeros((n, len(layers)), jnp.float32),
        j=jnp.zeros(n, jnp.int32),
        done=jnp.zeros(n, bool),
        key=jax.random.split(jax.random.PRNGKey(seed), n),
    )
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=max_iter, desc="jq Hessian scores", leave=False)
        except ImportError:  # tqdm is optional
            bar = None
    static = dict(graph=graph, layers=layers, chunk=chunk, max_iter=max_iter)
    static.update(min_iter=min_iter, tol=float(tol))
    steps = 0
    while True:
        state = _run_chunk(params, xs, state, **static)
        new = int(jnp.max(state.j))
        if bar is not None:
            bar.update(new - steps)
        steps = new
        if bool(jnp.all(state.done | (state.j >= max_iter))):
            break
    if bar is not None:
        bar.close()
    return {k: jnp.mean(v, axis=0) for k, v in state.scores.items()}


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
