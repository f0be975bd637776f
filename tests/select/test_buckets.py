"""Bucketed shapes: padding never changes a result, and a long process compiles a bounded set.

The searches, histograms and fake-quantizers compile for shapes rounded up to a size ladder
(``jq._src.select.buckets.bucket``) with the padding masked out. In compat mode every chosen
parameter and every candidate loss is compared bit for bit with the same computation compiled
for the exact, unpadded shape (NumPy's summation order, as runtime plans). Default-mode losses
are XLA sums, whose order depends on the compiled shape, so an ulp can move MCT's early stop:
there the best loss found agrees within ``1e-4`` relative (measured: 4e-5, uniform HMSE per
tensor). Histograms and fake-quantizers: bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import jq
from jq._src.select import fake_quant as _fake_quant
from jq._src.select import histogram as _histogram
from jq._src.select import packing as _packing
from jq._src.select import weight_stacks as _weights
from jq._src.select.buckets import bucket

HERE = Path(__file__).parent


def _exact(monkeypatch):
    """Compile for exact shapes: every bucket is the size itself."""
    monkeypatch.setattr(_weights, "_bucket_shape", lambda shape, per_channel: tuple(shape))
    for mod in (_packing, _fake_quant, _histogram):
        monkeypatch.setattr(mod, "bucket", lambda n, minimum=8: max(int(n), 1))


def _fields(qp):
    return [np.asarray(v) for v in (qp.threshold, qp.range_min, qp.range_max) if v is not None]


def test_ladder():
    sizes = [bucket(n) for n in range(1, 5000)]
    assert sizes[:8] == [8] * 8
    assert all(b >= n for n, b in zip(range(1, 5000), sizes, strict=True))
    assert all(b <= max(8, 1.5 * n) for n, b in zip(range(1, 5000), sizes, strict=True))
    assert len(set(sizes)) == 20  # two sizes per octave: 8, 12, 16, 24, ..., 4096, 6144


WEIGHT_CASES = [
    ((5, 3, 3, 3), "symmetric", "mse", True),
    ((13, 2, 3, 3), "uniform", "mae", True),
    ((7, 11), "power_of_two", "lp", False),
    ((3, 1, 3, 3), "uniform", "hmse", False),
    ((9, 5), "symmetric", "kl", True),
    ((6, 4, 1, 1), "symmetric", "hmse", True),
]


# `make test` keeps every default-mode cell but KL's and one compat cell (power-of-two LP); the
# other compat cells compile NumPy-order sums (15-40 s each on 2 cores) and run in
# `make test-all` (compat's padding is also exercised by every bucketed case of
# test_parity_mct.py, which pads to the bucket ladder and must match MCT bit for bit).
def _weight_cell_is_slow(case: tuple, compat: bool) -> bool:
    return case[2] == "kl" or (compat and case[1:3] != ("power_of_two", "lp"))


_WEIGHT_CELLS = [
    pytest.param(
        *case, compat, marks=[pytest.mark.slow] if _weight_cell_is_slow(case, compat) else []
    )
    for case in WEIGHT_CASES
    for compat in (False, True)
]


@pytest.mark.parametrize(("shape", "method", "err", "per_channel", "compat"), _WEIGHT_CELLS)
def test_weights_padding_is_exact(monkeypatch, rng, shape, method, err, per_channel, compat):
    x = rng.standard_normal(shape).astype(np.float32)
    h = rng.lognormal(size=shape).astype(np.float32) if err == "hmse" else None
    kw = dict(
        method=method,
        error_method=err,
        n_bits=4,
        per_channel=per_channel,
        hessian=h,
        mct_compat=compat,
        return_errors=True,
    )
    padded = jq.weights_qparams(x, **kw)
    _exact(monkeypatch)
    exact = jq.weights_qparams(x, **kw)
    if compat:  # NumPy's summation order (runtime plans): every choice and loss bit for bit
        for a, b in zip(_fields(padded), _fields(exact), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.asarray(padded.errors), np.asarray(exact.errors))
    else:  # XLA sums in a shape-dependent order: the best loss found agrees within 1e-4
        best = [
            np.nanmin(np.asarray(q.errors).reshape(-1, x.shape[0] if per_channel else 1), 0)
            for q in (padded, exact)
        ]
        np.testing.assert_allclose(best[0], best[1], rtol=1e-4)


def test_weights_batch_groups_share_buckets(rng):
    """Tensors of different shapes in one bucket are one group; results equal single calls."""
    xs = [rng.standard_normal((c, 3, 3, 3)).astype(np.float32) for c in (9, 10, 12)]
    batch = jq.weights_qparams_batch(xs, method="symmetric", error_method="mse")
    for x, qp in zip(xs, batch, strict=True):
        single = jq.weights_qparams(x, method="symmetric", error_method="mse")
        np.testing.assert_array_equal(np.asarray(qp.threshold), np.asarray(single.threshold))
        assert qp.threshold.shape == (x.shape[0], 1, 1, 1)


@pytest.mark.parametrize("compat", [False, True])
# KL's cells (35-60 s on 2 cores) run in `make test-all`.
@pytest.mark.parametrize("err", ["mse", pytest.param("kl", marks=pytest.mark.slow), "lp"])
def test_activation_batch_padding_is_exact(monkeypatch, rng, err, compat):
    data = [rng.standard_normal(300 + 50 * i) * (i + 1) for i in range(5)]
    hists = [jq.histogram(d, n_bins=256) for d in data]
    bins = np.stack([np.asarray(e) for e, _ in hists])
    counts = np.stack([np.asarray(c) for _, c in hists])
    kw = dict(method="symmetric", error_method=err, n_bits=4, mct_compat=compat)
    padded = jq.activation_qparams_batch(bins, counts, **kw)  # 5 histograms padded to 6
    _exact(monkeypatch)
    exact = jq.activation_qparams_batch(bins, counts, **kw)
    np.testing.assert_array_equal(np.asarray(padded.threshold), np.asarray(exact.threshold))
    np.testing.assert_array_equal(np.asarray(padded.signed), np.asarray(exact.signed))


@pytest.mark.parametrize("weighted", [False, True])
def test_histograms_padding_is_exact(monkeypatch, rng, weighted):
    x = (rng.standard_normal((7, 13)) * 3).astype(np.float32)
    w = rng.random((7, 13)).astype(np.float32) if weighted else None
    padded = [
        jq.histogram(x, n_bins=100, weights=w),
        jq.histogram_finalize(jq.histogram_update(jq.histogram_init(64), x, w)),
        jq.histogram_finalize(jq.histogram_update(jq.histogram_init(64, mct_compat=True), x, w)),
    ]
    _exact(monkeypatch)
    exact = [
        jq.histogram(x, n_bins=100, weights=w),
        jq.histogram_finalize(jq.histogram_update(jq.histogram_init(64), x, w)),
        jq.histogram_finalize(jq.histogram_update(jq.histogram_init(64, mct_compat=True), x, w)),
    ]
    for (e1, c1), (e2, c2) in zip(padded, exact, strict=True):
        np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))
        np.testing.assert_array_equal(np.asarray(c1), np.asarray(c2))


@pytest.mark.parametrize("method", ["symmetric", "uniform", "power_of_two"])
@pytest.mark.parametrize(
    ("shape", "per_channel", "axis"), [((5, 2, 3), True, 0), ((7, 9), True, 1), ((11,), False, 0)]
)
def test_fake_quant_padding_is_exact(monkeypatch, rng, method, shape, per_channel, axis):
    x = rng.standard_normal(shape).astype(np.float32)
    qp = jq.weights_qparams(x, method=method, per_channel=per_channel, channel_axis=axis)
    padded = np.asarray(jq.fake_quant(x, qp, n_bits=4))
    _exact(monkeypatch)
    exact = np.asarray(jq.fake_quant(x, qp, n_bits=4))
    assert padded.shape == shape and padded.dtype == x.dtype
    np.testing.assert_array_equal(padded, exact)
