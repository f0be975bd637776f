"""The pipeline's seams: one owner of the calibration data, a statistics pass whose states
merge, and ``quantize_graph`` as its list of passes (torch-free)."""

from __future__ import annotations

import numpy as np
import pytest
from stats_helpers import stats_merge

import jq
import jq.core
import jq.ptq
from jq._src.ptq.calibrate import StatsSpec, stats_finalize, stats_init, stats_step
from jq._src.ptq.data import accumulate, nothing_retained, retain

QUIET = jq.core.CoreConfig(progress=False)
CONV = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1)


def _model(rng):
    g = jq.Graph(
        inputs=("x",),
        nodes=(
            jq.Node("conv", "conv", ("x",), CONV),
            jq.Node("relu", "relu", ("conv",)),
            jq.Node("pool", "mean", ("relu",), {"axis": (2, 3), "keepdims": False}),
            jq.Node("fc", "linear", ("pool",)),
        ),
        outputs=("fc",),
    )
    p = {
        "conv": {
            "weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
            "bias": np.zeros(4, np.float32),
        },
        "fc": {
            "weight": rng.normal(size=(2, 4)).astype(np.float32),
            "bias": np.zeros(2, np.float32),
        },
    }
    return g, p


class _Counting:
    """A ``representative_data_gen`` that counts its calls."""

    def __init__(self, batches):
        self.batches, self.calls = batches, 0

    def __call__(self):
        self.calls += 1
        return ([b] for b in self.batches)


def test_data_generator_is_opened_once_without_auto(rng):
    g, p = _model(rng)
    gen = _Counting([rng.normal(size=(2, 3, 8, 8)).astype(np.float32) for _ in range(3)])
    res = jq.ptq.quantize_graph(g, p, gen, core_config=QUIET)
    assert gen.calls == 1
    assert any("statistics: 3 batches" in n for n in res.info.notes)


def test_auto_opens_the_data_a_second_time_and_checks_it_again(rng):
    g, p = _model(rng)
    qc = jq.core.QuantizationConfig(activation_error_method="auto")
    cfg = jq.core.CoreConfig(quantization_config=qc, progress=False)
    gen = _Counting([rng.normal(size=(2, 3, 8, 8)).astype(np.float32) for _ in range(2)])
    jq.ptq.quantize_graph(g, p, gen, core_config=cfg)
    assert gen.calls == 2
    # A generator that yields other data on its second call: the later pass rejects it.
    first = [rng.normal(size=(2, 3, 8, 8)).astype(np.float32)]
    calls = []

    def changing():
        calls.append(1)
        return iter([first] if len(calls) == 1 else [[first[0].astype(np.int32)]])

    with pytest.raises(TypeError, match="dtype int32; the first batch had float32"):
        jq.ptq.quantize_graph(g, p, changing, core_config=cfg)


def test_a_front_end_hands_over_opened_data(rng):
    g, p = _model(rng)
    batches = [rng.normal(size=(2, 3, 8, 8)).astype(np.float32) for _ in range(2)]
    gen = _Counting(batches)
    data = jq.ptq.open_calibration_data(gen, "my_front_end")
    assert gen.calls == 1 and data.n_inputs == 1 and data.shapes == ((2, 3, 8, 8),)
    a = jq.ptq.quantize_graph(g, p, data, core_config=QUIET, fn="my_front_end")
    b = jq.ptq.quantize_graph(g, p, lambda: ([x] for x in batches), core_config=QUIET)
    assert gen.calls == 1
    for la, lb in zip(a.info.layers, b.info.layers, strict=True):
        assert (la.name, la.threshold) == (lb.name, lb.threshold)


def test_statistics_states_of_shards_merge(rng):
    """Histograms, minima and maxima of two shards merged equal one pass over all batches;
    channel means agree within float32 rounding."""
    g, p = _model(rng)
    batches = [(rng.normal(size=(2, 3, 8, 8)).astype(np.float32),) for _ in range(4)]
    spec = StatsSpec(("x", "relu", "fc"), (("fc", ("pool", -1)),))

    def run(bs):
        step = lambda s, graph, arrays: stats_step(spec, p, s, graph, arrays)  # noqa: E731
        return accumulate(bs, lambda _: g, step, stats_init(spec))[0]

    whole = stats_finalize(spec, run(batches), "t")
    merged = stats_finalize(spec, stats_merge(spec, run(batches[:1]), run(batches[1:])), "t")
    assert merged.n_batches == whole.n_batches == 4
    for v in spec.hist_names:
        np.testing.assert_array_equal(merged.histograms[v][0], whole.histograms[v][0])
        np.testing.assert_array_equal(merged.histograms[v][1], whole.histograms[v][1])
        assert merged.minimum[v] == whole.minimum[v] and merged.maximum[v] == whole.maximum[v]
    np.testing.assert_allclose(merged.means["fc"], whole.means["fc"], rtol=1e-6, atol=1e-7)
    # A merged state goes on taking batches (its histograms are regrouped on the way).
    more = batches[0]
    state = stats_merge(spec, run(batches[:1]), run(batches[1:]))
    again = stats_finalize(spec, stats_step(spec, p, state, g, more), "t")
    five = stats_finalize(spec, run(batches + [more]), "t")
    for v in spec.hist_names:
        np.testing.assert_array_equal(again.histograms[v][1], five.histograms[v][1])


def _retained(batches, shapes, **kw):
    kept = nothing_retained(len(shapes))
    for arrays in batches:
        kept = retain(kept, arrays, shapes=shapes, **kw)
    return kept


def test_retaining_keeps_batches_of_the_first_shapes_and_single_samples(rng):
    batches = [(np.full((n, 2), i, np.float32),) for i, n in enumerate((3, 2, 3, 3))]
    kept = _retained(batches, ((3, 2),), n_batches=2, n_samples=4)
    assert [b[0][0, 0] for b in kept.batches] == [0, 2]  # (2, 2) is not the first shape
    assert [s[0, 0] for s in kept.samples[0]] == [0, 0, 0, 1]
    assert all(s.shape == (1, 2) for s in kept.samples[0])
    before = nothing_retained(1)
    after = retain(before, batches[0], shapes=((3, 2),), n_batches=2, n_samples=4)
    assert before == nothing_retained(1) and len(after.batches) == 1  # a new record


def test_retaining_is_bounded_in_bytes_and_keeps_no_views(rng):
    batches = [(np.full((4, 8), i, np.float32),) for i in range(5)]  # 128 bytes each
    kept = _retained(batches, ((4, 8),), n_batches=8, n_samples=2, max_bytes=300)
    assert [b[0][0, 0] for b in kept.batches] == [0, 1]  # a third would pass 300 bytes
    assert all(s.base is None for s in kept.samples[0])  # copies, not views of a batch
    kept = _retained(batches, ((4, 8),), n_batches=8, n_samples=0, max_bytes=10)
    assert len(kept.batches) == 1  # the first batch, whatever its size


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="Linux /proc")
def test_calibration_memory_does_not_grow_with_the_number_of_batches(rng):
    """200 batches of 768 KiB (150 MiB in all): memory after the last equals memory after the
    20th within 40 MiB (histograms, one batch in flight, the retained batch)."""
    g, p = _model(rng)
    rss = {}

    def gen():
        r = np.random.default_rng(0)
        for i in range(200):
            if i in (20, 199):
                rss[i] = _rss_mib()
            yield [r.standard_normal((64, 3, 32, 32), dtype=np.float32)]

    jq.ptq.quantize_graph(g, p, gen, core_config=QUIET)
    assert rss[199] - rss[20] < 40, rss
