"""One model program for the statistics and SQNR passes (issue 21, item 3): the probe's
statistics equal the fused step's bit for bit, its SQNR equals the quantized graph's, and a PTQ
call compiles one forward program for both passes plus histogram programs shared by every
model."""

from __future__ import annotations

import numpy as np
import pytest
from stats_helpers import collect_statistics

import jq
import jq.core
import jq.ptq
from jq._src.ptq import calibrate, probe, sqnr
from jq._src.ptq.build import ACT_QUANT_SUFFIX
from jq._src.ptq.calibrate import StatsSpec
from jq._src.runtime.programs import program_store
from jq._src.select import histogram_rows

QUIET = jq.core.CoreConfig(progress=False)
CONV = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1)


def _model(rng, wide: int = 24, bias: bool = True):
    """A conv net whose values span every histogram row size: the wide conv's output (2 x 24 x
    64 x 64 per batch) takes three rows of 2**16, the pooled values one row of 2**10."""
    g = jq.Graph(
        inputs=("x",),
        nodes=(
            jq.Node("conv", "conv", ("x",), CONV),
            jq.Node("relu", "relu", ("conv",)),
            jq.Node("conv2", "conv", ("relu",), CONV),
            jq.Node("pool", "mean", ("conv2",), {"axis": (2, 3), "keepdims": False}),
            jq.Node("fc", "linear", ("pool",)),
        ),
        outputs=("fc",),
    )
    p = {
        "conv": {"weight": rng.normal(size=(wide, 3, 3, 3)).astype(np.float32)},
        "conv2": {"weight": rng.normal(size=(8, wide, 3, 3)).astype(np.float32) / 8},
        "fc": {"weight": rng.normal(size=(2, 8)).astype(np.float32)},
    }
    if bias:
        p["conv"]["bias"] = rng.normal(size=wide).astype(np.float32)
    return g, p


def _batches(rng, n=3, scale=(1.0, 3.0, 0.5)):
    return [(rng.normal(size=(2, 3, 64, 64)) * scale[i]).astype(np.float32) for i in range(n)]


@pytest.mark.parametrize("compat", [False, True])
def test_probe_statistics_equal_the_fused_step(rng, compat):
    """Histograms (edges and counts), minima and maxima bit for bit, over batches whose ranges
    widen and shrink (the default-mode states regrid) and values cut into several rows; channel
    means to float32 rounding."""
    g, p = _model(rng)
    names = ("x", "conv", "relu", "conv2", "pool", "fc")
    means = (("conv2", ("relu", 1)), ("fc", ("pool", 1)))
    spec = probe.ProbeSpec(names, means, ("conv", "conv2", "fc"), (("conv", 24),))
    batches = [(b,) for b in _batches(rng)]

    def stats(with_probe):
        kw = dict(hist_names=names, mean_specs=means, mct_compat=compat, progress=False)
        if not with_probe:
            return collect_statistics(lambda _: g, p, batches, **kw)
        state = calibrate.stats_init(StatsSpec(names, means, mct_compat=compat, probe=spec))
        full = StatsSpec(names, means, mct_compat=compat, probe=spec)
        for b in batches:
            state = calibrate.stats_step(full, p, state, g, b)
        return calibrate.stats_finalize(full, state, "test")

    fused, probed = stats(False), stats(True)
    for n in names:
        np.testing.assert_array_equal(fused.histograms[n][0], probed.histograms[n][0], n)
        np.testing.assert_array_equal(fused.histograms[n][1], probed.histograms[n][1], n)
    assert fused.minimum == probed.minimum and fused.maximum == probed.maximum
    for k in fused.means:  # float32 means: rounding follows XLA's fusion (1 ulp seen)
        np.testing.assert_allclose(fused.means[k], probed.means[k], rtol=1e-6, err_msg=k)


def test_probe_statistics_refuse_nonfinite_activations(rng):
    g, p = _model(rng)
    p["conv"]["bias"][0] = np.inf
    gen = lambda: ([b] for b in _batches(rng, 1))  # noqa: E731
    with pytest.raises(ValueError, match=r"activations \[.relu.*non-finite values"):
        jq.ptq.quantize_graph(g, p, gen, core_config=QUIET)


def _db(ref, got):
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))


@pytest.mark.parametrize("bias", [True, False])
def test_probe_sqnr_equals_the_quantized_graph(rng, bias):
    """The SQNR the probe measures (gates off, then on) is the quantized graph's against the
    float graph's, per quantized value and at the output; a layer without bias gets one from
    bias correction, which the probe's zero bias stands in for."""
    g, p = _model(rng, bias=bias)
    batches = _batches(rng, 2)
    res = jq.ptq.quantize_graph(g, p, lambda: ([b] for b in batches), core_config=QUIET)
    x = batches[0]
    names = ["relu", "conv2"]
    qnames = [n + ACT_QUANT_SUFFIX for n in names]
    fy, facts = jq.apply(res.float_graph, res.float_params, x, capture=names)
    qy, qacts = jq.apply(res.graph, res.params, x, capture=qnames)
    assert res.info.output_sqnr_db == pytest.approx(_db(fy, qy), abs=1e-3)
    by_name = {(li.name, li.kind): li.sqnr_db for li in res.info.layers}
    for n, q in zip(names, qnames, strict=True):
        assert by_name[(n, "activation")] == pytest.approx(_db(facts[n], qacts[q]), abs=1e-3)


def _programs(fn) -> int:
    return fn._cache_size()


def test_one_model_program_for_statistics_and_sqnr(rng):
    """A PTQ call on a new model compiles one probe program, run by both passes; the fused
    statistics step and the SQNR program never compile; the histogram programs are the same for
    a second model of other shapes."""
    program_store().clear()  # no eviction during the test (the store holds 96 programs)
    fused, sqnr_prog = _programs(calibrate._stats_step), _programs(sqnr._sqnr_sums_jit)
    before = _programs(probe._forward_jit)
    g, p = _model(rng, wide=20)
    jq.ptq.quantize_graph(g, p, lambda: ([b] for b in _batches(rng, 2)), core_config=QUIET)
    assert _programs(probe._forward_jit) == before + 1
    rows = _programs(histogram_rows._count_rows)
    g2, p2 = _model(rng, wide=12)
    jq.ptq.quantize_graph(g2, p2, lambda: ([b] for b in _batches(rng, 2)), core_config=QUIET)
    assert _programs(probe._forward_jit) == before + 2
    assert _programs(histogram_rows._count_rows) == rows <= len(histogram_rows.ROW_SIZES)
    assert _programs(calibrate._stats_step) == fused
    assert _programs(sqnr._sqnr_sums_jit) == sqnr_prog
