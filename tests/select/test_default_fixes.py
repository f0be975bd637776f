"""Each of MCT's defects that jq's default mode fixes: MCT's answer (or compat mode, which tests
elsewhere show equals MCT), and jq's. The README lists the same fixes."""

import numpy as np
import pytest

import jq

mct_sel = pytest.importorskip(
    "model_compression_toolkit.core.common.quantization.quantization_params_generation"
)
from model_compression_toolkit.core import QuantizationErrorMethod as MQ  # noqa: E402
from model_compression_toolkit.core.common.collectors.histogram_collector import (  # noqa: E402
    HistogramCollector,
)

M = 2.0**-16


def mct_hist(*arrays):
    hc = HistogramCollector()
    for a in arrays:
        hc.update(np.asarray(a, np.float64))
    return hc.get_histogram()


def test_kl_does_not_collapse_power_of_two_activation_thresholds(rng):
    """MCT scores a range inside one bin as KL 0, so the smallest candidates win."""
    bins, counts = mct_hist(*(np.maximum(rng.normal(size=(8, 16, 8, 8)), 0) for _ in range(2)))
    mct = mct_sel.power_of_two_selection.power_of_two_selection_histogram(
        bins, counts, 2, 8, None, None, min_threshold=M, quant_error_method=MQ.KL
    )
    compat = jq.activation_qparams(bins, counts, error_method="kl", mct_compat=True)
    default = jq.activation_qparams(bins, counts, error_method="kl")
    assert float(compat.threshold) == mct["threshold"] <= 2.0**-6  # collapsed
    assert float(default.threshold) >= 1.0  # the data reach ~4.5: a sane threshold


@pytest.mark.parametrize("n_bits", [4, 8])
def test_kl_does_not_collapse_to_a_few_bins_at_low_bits(rng, n_bits):
    """A range of a few bins clips nearly all mass into its two end bins, which the grid holds
    exactly: KL near 0. jq requires one bin per grid level (at 4 bits the fix of a one-bin
    range alone still collapsed resnet18's signed layers to 2^-8..2^-7)."""
    bins, counts = mct_hist(rng.normal(size=200_000))
    compat = jq.activation_qparams(bins, counts, n_bits=n_bits, error_method="kl", mct_compat=True)
    default = jq.activation_qparams(bins, counts, n_bits=n_bits, error_method="kl")
    assert float(compat.threshold) <= 2.0**-8  # MCT collapses
    assert 2.0 <= float(default.threshold) <= 8.0  # N(0, 1): a threshold of a few sigma


@pytest.mark.slow  # KL searches in both modes, 30-55 s on 2 cores: make test-all
def test_per_tensor_power_of_two_kl_uses_the_float_tensor(rng):
    """MCT's per-tensor POT KL histograms the quantized candidate (swapped arguments)."""
    w = (rng.standard_t(2, size=(16, 27)) * 0.05).astype(np.float32)
    mct, _ = mct_sel.power_of_two_selection.power_of_two_selection_tensor(
        w, 2, 4, per_channel=False, channel_axis=0, min_threshold=M, quant_error_method=MQ.KL
    )
    compat = jq.weights_qparams(
        w, n_bits=4, method="power_of_two", error_method="kl", per_channel=False, mct_compat=True
    )
    default = jq.weights_qparams(
        w, n_bits=4, method="power_of_two", error_method="kl", per_channel=False, return_errors=True
    )
    assert float(compat.threshold) == float(np.ravel(mct["threshold"])[0])
    errors, cands = np.asarray(default.errors)[:, 0], np.asarray(default.candidates)[:, 0]
    # jq's choice minimises KL of the float tensor's histogram over the candidates.
    assert float(default.threshold) == cands[np.nanargmin(errors)]
    assert float(default.threshold) < float(compat.threshold)


@pytest.mark.slow  # MCT's per-channel KL: about 35 s on 2 cores (`make test-all`)
def test_per_channel_kl_channel_is_not_frozen_by_inf_times_zero(rng):
    """MCT's per-channel 0/1 blend turns inf*0 into NaN and freezes a channel's search."""
    w = rng.normal(size=(4, 64)).astype(np.float32) * 0.1
    w[1] = rng.uniform(5.0, 6.0, size=64)  # a channel far from zero: narrow ranges give inf
    mct, _ = mct_sel.symmetric_selection.symmetric_selection_tensor(
        w, 2, 8, per_channel=True, channel_axis=0, min_threshold=M, quant_error_method=MQ.KL
    )
    compat = jq.weights_qparams(w, error_method="kl", mct_compat=True, return_errors=True)
    default = jq.weights_qparams(w, error_method="kl", return_errors=True)
    np.testing.assert_allclose(np.ravel(compat.threshold), np.ravel(mct["threshold"]), rtol=1e-6)
    # compat's running best loss for channel 1 became NaN; default keeps a finite best
    assert np.isfinite(np.ravel(default.threshold)[1])
    assert np.ravel(default.threshold)[1] != np.ravel(compat.threshold)[1]


def test_per_channel_hmse_is_per_channel(rng):
    """MCT <= 2.6.1 collapses per-channel HMSE to one global normalised scalar."""
    w = (rng.normal(size=(6, 20)) * np.linspace(0.1, 2.0, 6)[:, None]).astype(np.float32)
    ones = np.ones_like(w)
    mse = jq.weights_qparams(w, method="power_of_two", error_method="mse")
    default = jq.weights_qparams(w, method="power_of_two", error_method="hmse", hessian=ones)
    compat = jq.weights_qparams(
        w,
        method="power_of_two",
        error_method="hmse",
        hessian=ones,
        mct_compat=True,
        return_errors=True,
    )
    np.testing.assert_array_equal(default.threshold, mse.threshold)
    # compat: every channel took the same candidate index (one shared scalar loss)
    errors = np.asarray(compat.errors)
    assert np.all(errors == errors[:, :1])


def test_one_auto_signedness_rule():
    """MCT: POT/NOCLIPPING look at every edge, the searches at non-empty bins only."""
    edges = np.linspace(-1.0, 7.0, 2049)
    counts = np.zeros(2048)
    counts[300:] = 1.0  # negative bins are empty
    mct_pot = mct_sel.power_of_two_selection.power_of_two_selection_histogram(
        edges, counts, 2, 8, None, None, min_threshold=M, quant_error_method=MQ.MSE
    )
    mct_sym = mct_sel.symmetric_selection.symmetric_selection_histogram(
        edges, counts, 2, 8, None, None, min_threshold=M, quant_error_method=MQ.MSE
    )
    assert bool(mct_pot["is_signed"]) and not bool(mct_sym["is_signed"])
    for method in ("power_of_two", "symmetric", "uniform"):
        compat = jq.activation_qparams(edges, counts, method=method, mct_compat=True)
        default = jq.activation_qparams(edges, counts, method=method)
        assert bool(compat.signed) == (method == "power_of_two")
        assert not bool(default.signed)


def test_zero_width_uniform_range():
    """All-zero weights: MCT returns the range (0, 0), on which every quantizer divides by 0."""
    w = np.zeros((3, 9), np.float32)
    mct, _ = mct_sel.uniform_selection.uniform_selection_tensor(
        w,
        2,
        8,
        per_channel=True,
        channel_axis=0,
        min_threshold=M,
        quant_error_method=MQ.NOCLIPPING,
    )
    assert np.all(mct["range_min"] == 0) and np.all(mct["range_max"] == 0)
    compat = jq.weights_qparams(w, method="uniform", error_method="noclipping", mct_compat=True)
    default = jq.weights_qparams(w, method="uniform", error_method="noclipping")
    assert np.all(np.asarray(compat.range_max) == 0)
    assert np.all(np.asarray(default.range_min) == 0)
    assert np.all(np.asarray(default.range_max) == M)
    np.testing.assert_array_equal(jq.fake_quant(w, default, n_bits=8), w)


@pytest.mark.slow  # KL searches in both modes, 30-55 s on 2 cores: make test-all
def test_uniform_weights_kl_uses_n_bits(rng):
    """MCT never forwards n_bits to the uniform-weights KL (it always scores an 8-bit grid)."""
    w = rng.normal(size=(1, 64)).astype(np.float32)
    compat2 = jq.weights_qparams(w, n_bits=2, method="uniform", error_method="kl", mct_compat=True)
    compat8 = jq.weights_qparams(w, n_bits=8, method="uniform", error_method="kl", mct_compat=True)
    default2 = jq.weights_qparams(w, n_bits=2, method="uniform", error_method="kl")
    np.testing.assert_array_equal(compat2.range_max, compat8.range_max)  # n_bits ignored
    assert not np.allclose(default2.range_max, compat2.range_max)


@pytest.mark.slow  # KL searches in both modes, 30-55 s on 2 cores: make test-all
def test_uniform_kl_on_one_signed_narrow_data():
    """MCT's uniform KL histogram search asserts on one-signed narrow data; jq compat raises a
    clear ValueError, default mode scores such candidates +inf and returns a range."""
    x = np.linspace(5.0, 7.0, 4000)
    bins, counts = mct_hist(x)
    with pytest.raises(AssertionError):
        mct_sel.uniform_selection.uniform_selection_histogram(
            bins, counts, 2, 8, None, None, min_threshold=M, quant_error_method=MQ.KL
        )
    with pytest.raises(ValueError, match="AssertionError"):
        jq.activation_qparams(bins, counts, method="uniform", error_method="kl", mct_compat=True)
    qp = jq.activation_qparams(bins, counts, method="uniform", error_method="kl")
    assert 0 <= float(qp.range_min) < float(qp.range_max)
