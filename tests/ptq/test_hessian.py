"""Weights HMSE scores (jq/_src/ptq/hessian.py): MCT's Hutchinson loop, the exact diagonal, the
im2col convolution of the scoring graph, input checks and re-tracing."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jq import Graph, Node
from jq._src.graph.ops import get_op
from jq._src.graph.ops.hooks import _conv_as_dot
from jq._src.ptq.hessian import (
    DRAWS_PER_PASS,
    MAX_ITER,
    MIN_ITER,
    TOL,
    _outputs_flat,
    _run_passes,
    exact_weight_diag,
    weight_scores,
)

LAYERS = ("c1", "c2", "dw", "c3", "fc")


def _conv(stride=1, groups=1):
    return dict(stride=(stride, stride), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=groups)


def conv_net(outputs=("c2", "fc"), seed=0):
    """x (1,3,12,12) -> c1 (12x12: explicit gradients) -> relu -> c2 (stride 2, 6x6: Gram,
    XLA conv) -> relu -> dw (depthwise: the layer's own vjp) -> c3 (stride 2, 3x3: Gram,
    conv as a dot) -> reshape -> fc (10). Outputs c2's map (144) and fc: D = 154 > 100."""
    g = Graph(
        ("x",),
        (
            Node("c1", "conv", ("x",), _conv()),
            Node("r1", "relu", ("c1",)),
            Node("c2", "conv", ("r1",), _conv(2)),
            Node("r2", "relu", ("c2",)),
            Node("dw", "conv", ("r2",), _conv(1, groups=4)),
            Node("c3", "conv", ("dw",), _conv(2)),
            Node("flat", "reshape", ("c3",), {"shape": (1, 36)}),
            Node("fc", "linear", ("flat",)),
        ),
        outputs,
    )
    r = np.random.default_rng(seed)

    def w(*s):
        return jnp.asarray(r.normal(0, 0.5, s), jnp.float32)

    p = {
        "c1": {"weight": w(4, 3, 3, 3), "bias": w(4)},
        "c2": {"weight": w(4, 4, 3, 3), "bias": w(4)},
        "dw": {"weight": w(4, 1, 3, 3)},
        "c3": {"weight": w(4, 4, 3, 3), "bias": w(4)},
        "fc": {"weight": w(10, 36), "bias": w(10)},
    }
    return g, p


def samples(n, seed=1):
    return [np.random.default_rng(seed).normal(size=(n, 1, 3, 12, 12)).astype(np.float32)]


def mct_loop(jacs, draws, *, max_iter=MAX_ITER, min_iter=MIN_ITER, tol=TOL):
    """MCT's loop (``_compute_hessian_for_hmse``) in float64 NumPy, ``g = J^T v`` from full
    Jacobians."""
    scores = {k: np.zeros(j.shape[1]) for k, j in jacs.items()}
    prev = None
    for j in range(max_iter):
        v = next(draws)
        for k, jac in jacs.items():
            g = jac.T @ v
            scores[k] = (j * scores[k] + g * g) / (j + 1)
        mean = np.array([np.mean(s) for s in scores.values()])
        if j > min_iter and prev is not None:
            if np.max(np.abs(mean - prev) / (np.abs(mean) + 1e-6)) < tol:
                break
        prev = mean
    return scores, j + 1


def jaq_draws(key, n_out):
    """The Rademacher draws weight_scores uses for one sample, in order."""
    while True:
        key, sub = jax.random.split(key)
        for v in np.asarray(jax.random.rademacher(sub, (DRAWS_PER_PASS, n_out), jnp.float32)):
            yield v.astype(np.float64)


@functools.partial(jax.jit, static_argnums=0)
def _jacobians(g, p, x):
    ws = {k: p[k]["weight"] for k in LAYERS}
    return jax.jacrev(lambda ws: _outputs_flat(g, p, LAYERS, ws, (x,)))(ws)


def jacobians(g, p, xs):
    """Per sample ``{layer: J (D, kernel size)}`` in float64 (one jitted jacrev)."""
    out = []
    for x in jnp.asarray(xs[0]):
        jac = _jacobians(g, p, x)
        out.append({k: np.asarray(j, np.float64).reshape(j.shape[0], -1) for k, j in jac.items()})
    return out


def exact_diag(g, p, xs):
    """Mean over samples of the exact ``diag(J^T J)``, each layer in its kernel's shape."""
    per = jacobians(g, p, xs)
    return {
        k: np.mean([np.sum(j[k] ** 2, axis=0) for j in per], axis=0).reshape(p[k]["weight"].shape)
        for k in LAYERS
    }


def test_exact_weight_diag_oracle():
    g, p = conv_net()
    xs = samples(1)
    want = exact_diag(g, p, xs)
    x = jnp.asarray(xs[0][0])
    oracle = jax.jit(exact_weight_diag, static_argnums=(0, 3))
    np.testing.assert_allclose(oracle(g, p, [x], "c2"), want["c2"], rtol=1e-5)


@pytest.mark.parametrize(
    # The second cell (draws past one pass) takes ~10 s on 2 cores: `make test-all`.
    "tol,chunk",
    [(TOL, 10), pytest.param(0.02, 2 * DRAWS_PER_PASS, marks=pytest.mark.slow)],
)
def test_same_draws_as_mct_loop(tol, chunk):
    # tol 0.02 stops mid-pass (the draws after the stop are masked out); TOL runs to 100.
    # The draws do not depend on chunk (two passes per call in the second case).
    g, p = conv_net()
    xs = samples(2)
    est = weight_scores(g, p, xs, LAYERS, tol=tol, chunk=chunk, seed=3, progress=False)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    refs, counts = [], []
    for s, jacs in enumerate(jacobians(g, p, xs)):
        ref, n = mct_loop(jacs, jaq_draws(keys[s], 154), tol=tol)
        refs.append(ref)
        counts.append(n)
    if tol == TOL:
        assert counts == [MAX_ITER, MAX_ITER]
    else:
        assert all(MIN_ITER + 2 <= c < MAX_ITER and c % DRAWS_PER_PASS for c in counts), counts
    for k in LAYERS:
        ref = np.mean([r[k] for r in refs], axis=0).reshape(p[k]["weight"].shape)
        np.testing.assert_allclose(est[k], ref, rtol=2e-4, atol=1e-6 * ref.max(), err_msg=k)
        assert np.all(np.asarray(est[k]) >= 0)


def test_error_against_exact_diagonal():
    # The estimator at its defaults (16 samples, MCT's rule: 100 draws here) against
    # jax.jacrev's exact diag(J^T J): mean |est - exact| / mean exact per layer, measured
    # 0.025-0.036 for the conv layers over 3 seeds (the previous one-draw-per-pass code:
    # 0.025-0.036 too), 0 for fc (its g^2 does not depend on v). Stated in the module doc.
    g, p = conv_net()
    xs = samples(16)
    est = weight_scores(g, p, xs, LAYERS, progress=False)
    exact = exact_diag(g, p, xs)
    for k in LAYERS:
        err = np.abs(np.asarray(est[k]) - exact[k]).sum() / exact[k].sum()
        assert err < 0.06, (k, err)
        assert abs(np.asarray(est[k]).sum() / exact[k].sum() - 1) < 0.03, k  # unbiased in total


def test_small_output_is_exact_and_does_not_retrace():
    g, p = conv_net(outputs=("fc",))  # D = 10 <= max_iter: the unit vectors, exact
    xs = samples(3)
    est = weight_scores(g, p, xs, LAYERS, progress=False)
    exact = exact_diag(g, p, xs)
    for k in LAYERS:
        e = exact[k]
        np.testing.assert_allclose(est[k], e, rtol=1e-4, atol=1e-6 * e.max(), err_msg=k)
    size = _run_passes._cache_size()
    again = weight_scores(g, p, samples(3, seed=2), LAYERS, progress=False)
    assert _run_passes._cache_size() == size
    assert set(again) == set(LAYERS)


@pytest.mark.parametrize(
    "shape,w_shape,stride,padding,dilation",
    [
        ((1, 3, 7, 6), (5, 3, 3, 2), (2, 1), ((1, 0), (2, 1)), (1, 2)),
        ((2, 4, 4, 4), (3, 4, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
        ((1, 2, 9), (3, 2, 4), (3,), ((2, 1),), (2,)),
        ((1, 2, 4, 5, 3), (2, 2, 2, 3, 1), (1, 2, 1), ((0, 1), (1, 1), (0, 0)), (1, 1, 1)),
    ],
)
def test_conv_as_dot_matches_conv(shape, w_shape, stride, padding, dilation):
    r = np.random.default_rng(0)
    x = jnp.asarray(r.normal(size=shape), jnp.float32)
    params = {"weight": jnp.asarray(r.normal(size=w_shape), jnp.float32)}
    params["bias"] = jnp.asarray(r.normal(size=w_shape[0]), jnp.float32)
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=1)
    want = get_op("conv")(params, x, **attrs)
    np.testing.assert_allclose(_conv_as_dot(params, x, **attrs), want, rtol=1e-5, atol=1e-5)


def test_bad_input():
    g, p = conv_net()
    xs = samples(1)
    with pytest.raises(ValueError, match="layers is empty"):
        weight_scores(g, p, xs, [], progress=False)
    with pytest.raises(ValueError, match="not nodes"):
        weight_scores(g, p, xs, ["nope", "x"], progress=False)
    with pytest.raises(ValueError, match="no 'weight'"):
        weight_scores(g, p, xs, ["r1"], progress=False)
    with pytest.raises(ValueError, match="no samples"):
        weight_scores(g, p, [xs[0][:0]], ["c1"], progress=False)
    with pytest.raises(ValueError, match="max_iter"):
        weight_scores(g, p, xs, ["c1"], max_iter=0, progress=False)
    with pytest.raises(ValueError, match="min_iter"):
        weight_scores(g, p, xs, ["c1"], min_iter=-1, progress=False)
