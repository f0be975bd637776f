"""Quantizers and metrics against plain NumPy loops (MCT 2.6.1's ``quantizers_helpers.py`` and
error functions, restated), and NumPy-exact sums."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jq._src.select import metrics as _metrics
from jq._src.select import npsum as _npsum
from jq._src.select.quantizers import pot, threshold_quantize, uniform_quantize, zero_align


def ref_uniform(x, a, b, n):
    """MCT's ``uniform_quantize_tensor`` (with ``fix_range_to_include_zero``), one element at a
    time, in float64."""
    out = np.empty_like(x)
    for i, v in np.ndenumerate(x):
        s = (b - a) / (2**n - 1)
        if a > 0:
            a2, b2 = 0.0, b
        elif b < 0:
            a2, b2 = a, 0.0
        else:
            a2 = s * np.round(a / s)
            b2 = a2 + (b - a)
        d = (b2 - a2) / (2**n - 1)
        out[i] = d * np.round((min(max(v, a2), b2) - a2) / d) + a2
    return out


@pytest.mark.parametrize("n_bits", [2, 4, 8])
@pytest.mark.parametrize("ab", [(-1.3, 2.1), (0.4, 3.0), (-2.5, -0.5), (-1.0, 1.0)])
def test_uniform_quantize_matches_loop(rng, n_bits, ab):
    x = rng.normal(size=200) * 2
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(uniform_quantize, static_argnums=3)(x, *ab, n_bits)[0])
    # Tolerance: the loop computes b' as a' + (b - a) while MCT (and jq) compute b - a + a';
    # both are float64, so values agree to a few ulps.
    np.testing.assert_allclose(got, ref_uniform(x, *ab, n_bits), rtol=0, atol=1e-12)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("n_bits", [1, 3, 8])
def test_threshold_quantize_grid(rng, signed, n_bits, exact):
    t = 1.7
    x = rng.normal(size=500) * 3
    with jax.enable_x64(True):
        q = np.asarray(threshold_quantize(x, t, n_bits, signed, exact=exact))
    step = t / 2 ** (n_bits - signed)
    k = q / step
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)  # on the grid
    lo, hi = (-(2 ** (n_bits - 1)), 2 ** (n_bits - 1) - 1) if signed else (0, 2**n_bits - 1)
    assert k.min() >= lo - 1e-9 and k.max() <= hi + 1e-9
    inside = (x > lo * step) & (x < hi * step)
    assert np.all(np.abs(q - x)[inside] <= step / 2 + 1e-12)  # rounding error at most half a step


def test_zero_width_range_gives_nan_like_mct():
    with jax.enable_x64(True):
        a, b = zero_align(jnp.asarray(0.5), jnp.asarray(0.5), 8)
    assert np.isnan(a) and np.isnan(b)


@given(st.floats(min_value=1e-30, max_value=1e30, allow_nan=False))
@settings(max_examples=200, deadline=None)
def test_pot_is_smallest_power_of_two_above(v):
    with jax.enable_x64(True):
        t = float(pot(jnp.asarray(v), 2.0**-16))
    m = max(v, 2.0**-16)
    assert t >= m and t / 2 < m
    assert np.log2(t) == np.round(np.log2(t))


@pytest.mark.parametrize("n", [1, 5, 7, 8, 9, 100, 128, 129, 1000, 4608, 20000, 65536 + 24])
def test_pairwise_sum_is_numpy_exact(rng, n):
    x = rng.normal(size=(3, n)) ** 2
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(_npsum.pairwise_sum)(x))
        mean = np.asarray(jax.jit(_npsum.mean)(x))
    np.testing.assert_array_equal(got, np.sum(x, axis=-1))
    np.testing.assert_array_equal(mean, np.mean(x, axis=-1))


@pytest.mark.parametrize("length", [12, 24, 130, 3072])
def test_planned_sums_are_numpy_exact_for_every_n(rng, length):
    """One program per padded length sums every prefix ``n <= length`` (and every ``(r, c)``
    corner of a padded 2-D layout) in NumPy's order; NaNs in the padding are never read."""
    x = rng.normal(size=(2, length)) * 10.0 ** rng.integers(-3, 4, size=(2, length))
    ns = sorted({1, 5, 7, 8, 9, length // 2, length - 1, length, *rng.integers(1, length, 6)})
    with jax.enable_x64(True):
        fn = jax.jit(_npsum.planned_sum)
        for n in ns:
            padded = np.where(np.arange(length) < n, x, np.nan)
            got = np.asarray(fn(padded, _npsum.sum_plan(n, length)))
            np.testing.assert_array_equal(got, np.sum(x[:, :n], axis=-1), err_msg=f"n={n}")
        rows = 4
        cols = length // rows
        for r, c in [(1, 1), (3, cols - 1), (rows, cols), (2, max(1, cols // 3))]:
            grid = np.full((2, rows, cols), np.nan)
            grid[:, :r, :c] = x[:, : r * c].reshape(2, r, c)
            got = np.asarray(fn(grid.reshape(2, -1), _npsum.sum_plan_2d(r, c, rows, cols)))
            want = np.sum(grid[:, :r, :c].reshape(2, -1), axis=-1)
            np.testing.assert_array_equal(got, want, err_msg=f"corner {r}x{c}")


def test_no_fma_contraction(rng):
    a, b, c = rng.normal(size=(3, 10000))
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(_npsum.mul_add)(a, b, c))
        prod = np.asarray(jax.jit(lambda a, b, c: _npsum.mul(a, b) - c)(a, b, c))
    np.testing.assert_array_equal(got, a * b + c)
    np.testing.assert_array_equal(prod, a * b - c)


def ref_metric(kind, x, q, p=2.0, w=None):
    total = 0.0
    for xi, qi, wi in zip(x, q, np.ones_like(x) if w is None else w, strict=True):
        d = abs(xi - qi)
        total += {"mse": d**2, "mae": d, "lp": d**p, "hmse": (wi * d) ** 2}[kind]
    return total / len(x)


@pytest.mark.parametrize("kind", ["mse", "mae", "lp", "hmse"])
@pytest.mark.parametrize("exact", [False, True])
def test_tensor_metrics_match_loop(rng, kind, exact):
    x, q, w = rng.normal(size=(3, 4, 50))
    w = np.abs(w)
    with jax.enable_x64(True):
        fn = {
            "mse": lambda x, q: _metrics.mse(x, q, exact=exact),
            "mae": lambda x, q: _metrics.mae(x, q, exact=exact),
            "lp": lambda x, q: _metrics.lp(x, q, 3.0, exact=exact),
            "hmse": lambda x, q: _metrics.hmse(x, q, w, exact=exact),
        }[kind]
        got = np.asarray(jax.jit(fn)(x, q))
    want = [ref_metric(kind, x[c], q[c], 3.0, w[c]) for c in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("kind", ["mse", "mae", "lp"])
def test_histogram_metrics_match_loop_and_numpy(rng, kind):
    edges = np.linspace(-3, 5, 2049)
    q = np.round(edges * 4) / 4
    counts = rng.integers(0, 50, size=2048).astype(np.float64)
    p = 3.0
    d = (q - edges)[:-1]
    per_bin = {"mse": d**2.0, "mae": np.abs(d), "lp": np.abs(d) ** p}[kind]
    loop = sum(c * v for c, v in zip(counts, per_bin, strict=True)) / counts.sum()
    mct_formula = np.sum(per_bin * counts) / np.sum(counts)
    fn = {"mse": _metrics.hist_mse, "mae": _metrics.hist_mae}.get(kind)
    with jax.enable_x64(True):
        if fn is None:
            got = _metrics.hist_lp(edges, q, counts, p, exact=True)
        else:
            got = fn(edges, q, counts, exact=True)
    np.testing.assert_allclose(float(got), loop, rtol=1e-12)
    if kind != "lp":  # XLA's pow may differ from C's in the last ulp; squares and abs do not
        assert float(got) == mct_formula


def test_hmse_with_unit_scores_equals_mse(rng):
    x, q = rng.normal(size=(2, 5, 64)).astype(np.float32)
    np.testing.assert_array_equal(_metrics.hmse(x, q, np.ones_like(x)), _metrics.mse(x, q))


@pytest.mark.parametrize("a,b", list(itertools.product([-2.0, 0.0, 0.3], [0.5, 2.0])))
def test_uniform_quantize_levels_identify_values(a, b):
    x = np.linspace(-3, 3, 101)
    with jax.enable_x64(True):
        q, level = uniform_quantize(x, a, b, 4)
    q, level = np.asarray(q), np.asarray(level)
    for lv in np.unique(level):
        assert len(np.unique(q[level == lv])) == 1
    assert len(np.unique(q)) == len(np.unique(level))


@pytest.mark.parametrize("ab", [(-1.3, 2.1), (0.4, 3.0), (-2.5, -0.5)])
def test_fast_forms_agree_with_exact_forms(rng, ab):
    """The reciprocal-step forms (default-mode searches) give the exact forms' grid: equal
    values up to an ulp, levels equal except at rounding ties."""
    x = rng.normal(size=2000) * 2
    with jax.enable_x64(True):
        q1, l1 = uniform_quantize(x, *ab, 4)
        q2, l2 = uniform_quantize(x, *ab, 4, exact=False)
    np.testing.assert_allclose(np.asarray(q2), np.asarray(q1), rtol=0, atol=1e-12)
    assert np.mean(np.asarray(l1) == np.asarray(l2)) == 1.0
