"""Tests for jq._src.select.kl: the KL metric (MCT 2.6.1's ``_kl_error_histogram``), both modes."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jq
from jq._src.select.histogram import _histogram_impl
from jq._src.select.kl import kl_hist, kl_tensor_from_hist, np_log_f32
from jq._src.select.npsum import slice_sum


def kl_tensor(x_row, lo, hi, *, n_bits: int, mct_compat: bool = False):
    """The tensor KL of MCT 2.6.1's ``_kl_error_function``: a 2048-bin histogram of ``x_row``
    (MCT's size for weights), then :func:`kl_tensor_from_hist` (test-only composition)."""
    edges, counts = _histogram_impl(jax.numpy.asarray(x_row), None, 2048)
    return kl_tensor_from_hist(edges, counts, lo, hi, n_bits=n_bits, mct_compat=mct_compat)


def _levels(edges: np.ndarray, a: float, b: float, n_bits: int) -> np.ndarray:
    """Grid level of each edge on a plain uniform grid over [a, b] (test-local, no zero-align)."""
    d = (b - a) / (2**n_bits - 1)
    return np.round((np.clip(edges, a, b) - a) / d)


def _hist(seed: int, kind: str = "normal", n_bins: int = 256):
    r = np.random.default_rng(seed)
    x = r.standard_normal(4000)
    if kind == "relu":
        x = np.maximum(x, 0)
    counts, edges = np.histogram(x, bins=n_bins)
    return edges, counts.astype(np.float64)


def _ref_kl(levels, edges, counts, lo, hi, *, fixed: bool, n_levels: int = 256) -> float:
    """Plain-loop restatement of MCT's ``_kl_error_histogram`` in float64; ``fixed`` applies
    jq's default-mode fixes."""
    n = len(counts)
    if not (np.any(edges >= lo) and np.any(edges < hi)):
        return np.inf
    if fixed and lo >= hi:
        return np.inf
    i0 = max(int(np.argmax(edges >= lo)) - 1, 0)
    i1 = int(np.nonzero(edges < hi)[0].max())
    if i0 == i1:
        return np.inf if fixed else 0.0
    if fixed and i1 - i0 < max(2, min(n_levels, n)):  # every grid level needs a bin
        return np.inf
    c = counts[i0:i1]
    if not c.any():
        return np.inf
    a = c.copy()
    a[0] += counts[:i0].sum()
    a[-1] += counts[i1:].sum()
    p = a / a.sum()
    lv = levels[i0 : i1 + 1]
    qbc = np.zeros(i1 - i0)
    for u in np.unique(lv):
        members = [k for k in range(i1 - i0) if lv[k] == u]
        m = sum(c[k] for k in members)
        z = sum(1 for k in members if c[k] > 0)
        for k in members:
            if c[k] > 0:
                qbc[k] = m / (z if fixed else z + 1e-6)
    q = qbc / qbc.sum()

    def smooth(v):
        eps = v[v != 0].min() / (2 * len(v))
        nz = np.count_nonzero(v)
        return np.where(v != 0, v - eps * (len(v) - nz) / nz, eps)

    ps, qs = smooth(p), smooth(q)
    kl = float(np.sum(ps * np.log(ps / qs)))
    return max(kl, 0.0) if fixed else kl
    del n


# Shared compiled forms (compat compiles take seconds): one per mode, traced arguments.
_compat_jit = jax.jit(
    lambda lv, e, c, lo, hi: kl_hist(lv, e, c, lo, hi, n_levels=256, mct_compat=True)
)
_compat_vmap = jax.jit(
    jax.vmap(
        lambda lv, e, c, lo, hi: kl_hist(lv, e, c, lo, hi, n_levels=256, mct_compat=True),
        in_axes=(0, None, None, 0, 0),
    )
)
_default_jit = jax.jit(lambda lv, e, c, lo, hi: kl_hist(lv, e, c, lo, hi, n_levels=256))


# ------------------------------------------------------------------------ NumPy arithmetic


def test_np_sum_is_numpy_pairwise_bit_for_bit():
    r = np.random.default_rng(0)
    f = jax.jit(jax.vmap(slice_sum, in_axes=(None, 0, 0)))
    v = (r.standard_normal(2048) * r.random(2048) ** 8).astype(np.float32)
    start = r.integers(0, 2048, 500)
    n = np.minimum((r.random(500) * (2048 - start)).astype(int), 2048 - start)
    n[:50], start[:50] = r.integers(0, 20, 50), 0
    n[50] = 2048 - start[50]
    out = np.asarray(f(v, start, n))
    ref = np.array([np.sum(v[s : s + k]) for s, k in zip(start, n, strict=True)])
    np.testing.assert_array_equal(out, ref)


def test_slice_sum_float32_is_numpys_float32_sum():
    # float32 values held in float64, summed with float32 rounding (compat mode's final KL sum).
    r = np.random.default_rng(3)
    v = (r.standard_normal(2048) * r.random(2048) ** 8).astype(np.float32)
    start = r.integers(0, 2048, 300)
    n = np.minimum((r.random(300) * (2048 - start)).astype(int), 2048 - start)
    n[:30], start[:30] = r.integers(0, 20, 30), 0
    n[30] = 2048 - start[30]
    with jax.enable_x64(True):
        f = jax.jit(jax.vmap(lambda v, s, k: slice_sum(v, s, k, float32=True), (None, 0, 0)))
        out = np.asarray(f(v.astype(np.float64), start, n))
    ref = np.array([np.sum(v[s : s + k]) for s, k in zip(start, n, strict=True)])
    np.testing.assert_array_equal(out.astype(np.float32), ref)
    np.testing.assert_array_equal(out, ref.astype(np.float64))


def test_np_log_f32_is_numpys_kernel():
    x = np.exp(np.random.default_rng(1).uniform(-30, 10, 200_000)).astype(np.float32)
    with jax.enable_x64(True):
        np.testing.assert_array_equal(np.asarray(jax.jit(np_log_f32)(x)), np.log(x))


# ------------------------------------------------------------------------ default mode


@pytest.mark.parametrize("kind", ["normal", "relu"])
@pytest.mark.parametrize("n_bits", [2, 4, 8])
def test_default_matches_reference_loop(kind, n_bits):
    edges, counts = _hist(3, kind)
    f = jax.jit(
        jax.vmap(
            lambda lv, lo, hi: kl_hist(lv, edges, counts, lo, hi, n_levels=2**n_bits),
            in_axes=(0, 0, 0),
        )
    )
    mx = np.abs(edges).max()
    ts = mx * np.array([2.0, 1.0, 0.7, 0.5, 0.3, 0.1, 0.02, 0.005, 1e-3])
    los = -ts if kind == "normal" else np.zeros_like(ts) - 1e-9
    levels = np.stack([_levels(edges, lo, t, n_bits) for lo, t in zip(los, ts, strict=True)])
    out = np.asarray(f(levels, los, ts))
    ref = np.array(
        [
            _ref_kl(lv, edges, counts, lo, t, fixed=True, n_levels=2**n_bits)
            for lv, lo, t in zip(levels, los, ts, strict=True)
        ]
    )
    assert out.dtype == np.float32
    np.testing.assert_array_equal(np.isinf(out), np.isinf(ref))
    fin = np.isfinite(ref)
    # float32 vs float64 reference: smoothing and log in float32.
    np.testing.assert_allclose(out[fin], ref[fin], rtol=2e-4, atol=2e-6)


def test_default_fix_range_inside_one_bin():
    """MCT scores a range inside one bin (or one bin wide) 0.0, so tiny thresholds win."""
    edges, counts = _hist(4, "relu")
    w = edges[1] - edges[0]
    for t in (0.3 * w, 1.5 * w):  # i1 - i0 == 0, == 1
        lv = _levels(edges, -t, t, 8)
        assert float(kl_hist(lv, edges, counts, -t, t, n_levels=256)) == np.inf
        assert _ref_kl(lv, edges, counts, -t, t, fixed=False) == 0.0  # MCT's answer
    t = 1.5 * w
    with jax.enable_x64(True):
        lv = _levels(edges, -t, t, 8)
        compat = _compat_jit(lv, edges, counts, -t, t)
        assert float(compat) == pytest.approx(0.0, abs=1e-7)


def test_default_lossless_candidate_is_exactly_zero():
    # Integer data on a grid that resolves every bin: each group is one bin, nothing clipped.
    x = np.repeat(np.arange(-8, 8), np.arange(1, 17))
    counts, edges = np.histogram(x, bins=16)
    lo, hi = edges[0] - 1e-3, edges[-1] + 1e-3
    lv = np.arange(17, dtype=float)
    assert float(kl_hist(lv, edges, counts.astype(float), lo, hi, n_levels=256)) == 0.0
    with jax.enable_x64(True):  # MCT: +1e-6 and float32 smoothing leave noise
        v = float(_compat_jit(lv, edges, counts.astype(float), lo, hi))
        assert abs(v) < 1e-6


@pytest.mark.parametrize("mct_compat", [False, True])
def test_special_cases(mct_compat):
    edges, counts = _hist(5)
    lv = np.zeros_like(edges)
    with jax.enable_x64(mct_compat):
        f = _compat_jit if mct_compat else _default_jit

        def kl(lo, hi, c=counts):
            return float(f(lv, edges, c, lo, hi))

        assert kl(edges[-1] + 1, edges[-1] + 2) == np.inf  # no edge >= lo
        assert kl(edges[0] - 2, edges[0] - 1) == np.inf  # no edge < hi
        assert kl(0.5, -0.5) == np.inf  # lo >= hi (MCT asserts)
        empty = counts.copy()
        empty[100:150] = 0
        assert kl(edges[110], edges[140], empty) == np.inf  # no counts in range
        g = jax.jit(
            lambda lo, hi: kl_tensor_from_hist(
                edges, counts, lo, hi, n_bits=2, mct_compat=mct_compat
            )
        )
        assert float(g(0.2, 0.2)) == np.inf


def test_vmap_equals_loop_and_jit_equals_eager():
    edges, counts = _hist(6)
    ts = np.abs(edges).max() * np.linspace(0.1, 1.2, 7)
    lvs = np.stack([_levels(edges, -t, t, 4) for t in ts])

    def one(lv, t):
        return kl_hist(lv, edges, counts, -t, t, n_levels=16)

    batched = np.asarray(jax.jit(jax.vmap(one))(lvs, ts))
    looped = np.array([float(one(lv, t)) for lv, t in zip(lvs, ts, strict=True)])
    # Default mode is float32; XLA may order a fused reduction differently from eager ops.
    np.testing.assert_allclose(batched, looped, rtol=2e-6)
    jitted = np.array([float(jax.jit(one)(lv, t)) for lv, t in zip(lvs[:2], ts[:2], strict=True)])
    np.testing.assert_allclose(jitted, looped[:2], rtol=2e-6)
    # channels x candidates: the same candidates on two stacked "channels"
    chans = jax.jit(jax.vmap(jax.vmap(one)))(np.stack([lvs, lvs]), np.stack([ts, ts]))
    np.testing.assert_array_equal(np.asarray(chans[0]), batched)
    np.testing.assert_array_equal(np.asarray(chans[1]), batched)


def test_kl_tensor_uses_histogram_once_form():
    x = np.random.default_rng(7).standard_normal(300).astype(np.float32)
    edges, counts = jq.histogram(x, n_bins=2048)
    a = kl_tensor(x, -1.5, 1.5, n_bits=4)
    b = kl_tensor_from_hist(edges, counts, -1.5, 1.5, n_bits=4)
    assert float(a) == float(b)
    assert np.isfinite(float(a))


def test_n_levels_above_bins_uses_runs():
    edges, counts = _hist(8, n_bins=64)
    lv = _levels(edges, -2.0, 2.0, 12)  # 4096 levels > 64 bins
    a = kl_hist(lv, edges, counts, -2.0, 2.0, n_levels=4096)
    ref = _ref_kl(lv, edges, counts, -2.0, 2.0, fixed=True)
    np.testing.assert_allclose(float(a), ref, rtol=2e-4, atol=2e-6)


def test_shape_errors():
    edges, counts = _hist(9)
    with pytest.raises(ValueError, match="kl_hist"):
        kl_hist(edges[:-1], edges, counts, -1.0, 1.0, n_levels=256)


# ------------------------------------------------------------------------ MCT parity


def _mct():
    pytest.importorskip("model_compression_toolkit")
    from model_compression_toolkit.core.common.collectors.histogram_collector import (
        HistogramCollector,
    )
    from model_compression_toolkit.core.common.quantization.quantization_params_generation import (
        error_functions as ef,
    )
    from model_compression_toolkit.core.common.quantization.quantizers.quantizers_helpers import (
        quantize_tensor,
    )

    return HistogramCollector, ef, quantize_tensor


@pytest.mark.mct
@pytest.mark.parametrize(
    ("seed", "kind", "n_batches"),
    [
        (0, "normal", 1),
        # 12-15 s each on 2 cores: `make test-all` runs the other three.
        *(
            pytest.param(*c, marks=pytest.mark.slow)
            for c in [(1, "relu", 1), (2, "heavy", 3), (3, "relu", 2)]
        ),
    ],
)
def test_compat_kl_hist_matches_mct(seed, kind, n_batches):
    """Bit for bit on single-batch (integer) histograms; multi-batch (interpolated float)
    histograms: group masses are summed sequentially, NumPy pairwise, so allow 1e-6 relative."""
    HistogramCollector, ef, quantize_tensor = _mct()
    r = np.random.default_rng(seed)
    hc = HistogramCollector()
    for _ in range(n_batches):
        x = r.standard_normal(3000) * (1 + r.random())
        if kind == "relu":
            x = np.maximum(x, 0)
        if kind == "heavy":
            x = r.laplace(size=3000) ** 3
        hc.update(x)
    bins, counts = hc.get_histogram()
    signed = kind != "relu"
    ts = 2 * np.abs(bins).max() * 2.0 ** -np.arange(0, 20, 2)
    levels, ref = [], []
    for t in ts:
        q = quantize_tensor(bins, t, 8, signed)
        levels.append(np.unique(q, return_inverse=True)[1].astype(np.float64))
        ref.append(ef._kl_error_histogram(q, np.zeros(len(counts)), bins, counts, -t, t))
    ref = np.array(ref, np.float64)
    with jax.enable_x64(True):
        f = jax.jit(
            jax.vmap(lambda lv, t: kl_hist(lv, bins, counts, -t, t, n_levels=256, mct_compat=True))
        )
        out = np.asarray(f(np.stack(levels), ts))
    if n_batches == 1:
        np.testing.assert_array_equal(out, ref)
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=0)


@pytest.mark.mct
# 11-16 s each on 2 cores: 8 bits in `make test`, 2 and 4 in `make test-all`.
@pytest.mark.parametrize("n_bits", [*(pytest.param(b, marks=pytest.mark.slow) for b in (2, 4)), 8])
def test_compat_kl_tensor_matches_mct(n_bits):
    _, ef, _ = _mct()
    r = np.random.default_rng(n_bits)
    x = r.standard_normal(400) * r.random()
    m = np.abs(x).max()
    lo = -m * np.array([1.2, 1.0, 0.8, 0.5, 0.3, 0.2, 0.4])
    hi = m * np.array([1.2, 0.9, 0.8, 0.6, 0.3, 0.2, -0.5])  # last: hi <= lo
    ref = np.array(
        [ef._kl_error_function(x, a, b, n_bits=n_bits) for a, b in zip(lo, hi, strict=True)]
    )
    with jax.enable_x64(True):
        f = jax.jit(
            jax.vmap(
                lambda v, a, b: kl_tensor(v, a, b, n_bits=n_bits, mct_compat=True),
                in_axes=(None, 0, 0),
            )
        )
        out = np.asarray(f(x, lo, hi))
    np.testing.assert_array_equal(out, ref.astype(np.float64))
