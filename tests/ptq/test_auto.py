"""AUTO error method (``jq/_src/ptq/auto_eval.py``): the one-pass SQNR evaluation and the choice.

Reference tests against plain NumPy loops (tolerances written out), the choice's tie rule,
the normalised error curves, and one property: the chosen method's SQNR is the maximum.
"""

from __future__ import annotations

import math
import re

import jax.numpy as jnp
import numpy as np
import pytest

import jq
from jq import ErrorMethod, Graph, Node
from jq._src.ptq import auto_analysis as _analysis
from jq._src.ptq import auto_eval as _auto
from jq._src.ptq.auto_select import AUTO_MARGIN_DB, check_note, keep_option
from jq._src.select.quantizers import affine_grid, threshold_range


def _np_quant(x, a, b, n_bits):
    """Zero-aligned uniform fake-quant in NumPy (the pipeline's ``fake_quant`` node)."""
    x = np.asarray(x, np.float64)
    a, b = min(a, 0.0), max(b, 0.0)
    s = (b - a) / (2**n_bits - 1)
    z = np.round(-a / s)
    a, b = -z * s, (2**n_bits - 1 - z) * s
    return np.clip(np.round((np.clip(x, a, b) - a) / s) * s + a, a, b)


def _graph():
    nodes = (
        Node("fc1", "linear", ("x",)),
        Node("act", "relu", ("fc1",)),
        Node("fc2", "linear", ("act",)),
    )
    return Graph(("x",), nodes, ("fc2",), input_shapes=[(16, 6)])


def _params(rng):
    return {
        "fc1": {
            "weight": rng.standard_normal((5, 6)).astype(np.float32),
            "bias": rng.standard_normal(5).astype(np.float32),
        },
        "fc2": {
            "weight": rng.standard_normal((3, 5)).astype(np.float32),
            "bias": rng.standard_normal(3).astype(np.float32),
        },
    }


def test_candidate_methods_and_is_auto():
    assert _auto.candidate_methods("activation")[0] is ErrorMethod.MSE
    assert ErrorMethod.HMSE not in _auto.candidate_methods("activation")
    assert ErrorMethod.HMSE in _auto.candidate_methods("weights")
    assert ErrorMethod.HMSE not in _auto.candidate_methods("weights", hessian=False)
    assert _auto.is_auto("AUTO") and _auto.is_auto(" auto") and not _auto.is_auto("mse")
    with pytest.raises(ValueError, match="candidate_methods: kind"):
        _auto.candidate_methods("bias")


def test_auto_sqnr_matches_numpy_loop(rng):
    graph, params = _graph(), _params(rng)
    batches = [(rng.standard_normal((16, 6)).astype(np.float32),) for _ in range(3)]
    n_bits = 4
    # Activation "act" under 3 methods: two thresholds (unsigned) and a range.
    ranges = []
    for t in (0.5, 2.0):
        a, b = threshold_range(jnp.float32(t), n_bits, False)
        ranges.append((float(a), float(b)))
    ranges.append((-0.1, 1.3))
    grids = [
        [float(g) for g in affine_grid(n_bits, threshold=jnp.float32(0.5), signed=False)],
        [float(g) for g in affine_grid(n_bits, threshold=jnp.float32(2.0), signed=False)],
        [
            float(g)
            for g in affine_grid(n_bits, range_min=jnp.float32(-0.1), range_max=jnp.float32(1.3))
        ],
    ]
    # Kernel fc2 under 2 methods: the weight fake-quantized at two per-channel thresholds.
    w = params["fc2"]["weight"]
    wq = []
    for scale in (1.0, 0.6):
        t = np.abs(w).max(1, keepdims=True) * scale
        wq.append(np.asarray(jq.fake_quant(w, jq.QParams(threshold=t), n_bits=n_bits)))
    biases = np.stack([params["fc2"]["bias"], params["fc2"]["bias"] - 0.01])
    sums = _auto.auto_sqnr(
        lambda shapes: graph,
        params,
        iter(batches),
        act_values=("act",),
        act_grids=np.array([grids]),
        kernels=[_auto.KernelSpec("fc2", "linear", "act", ())],
        kernel_weights=[np.stack(wq)],
        kernel_biases=[biases],
    )
    # NumPy loop reference (float64).
    a_sig, a_noise = 0.0, np.zeros(3)
    k_sig, k_noise = 0.0, np.zeros(2)
    p = {k: {n: v.astype(np.float64) for n, v in d.items()} for k, d in params.items()}
    for (x,) in batches:
        act = np.maximum(x @ p["fc1"]["weight"].T + p["fc1"]["bias"], 0)
        a_sig += np.sum(act**2)
        for m, (a, b) in enumerate(ranges):
            a_noise[m] += np.sum((_np_quant(act, a, b, n_bits) - act) ** 2)
        y = act @ p["fc2"]["weight"].T + p["fc2"]["bias"]
        k_sig += np.sum(y**2)
        for m in range(2):
            yq = act @ wq[m].astype(np.float64).T + biases[m]
            k_noise[m] += np.sum((yq - y) ** 2)
    assert sums.n_batches == 3
    np.testing.assert_allclose(sums.act_signal, [a_sig], rtol=1e-5)
    np.testing.assert_allclose(sums.act_noise, [a_noise], rtol=1e-4)
    np.testing.assert_allclose(sums.kernel_signal, [k_sig], rtol=1e-5)
    np.testing.assert_allclose(sums.kernel_noise, [k_noise], rtol=1e-4)


def test_auto_sqnr_rejects_bad_shapes_and_empty_data(rng):
    graph, params = _graph(), _params(rng)
    with pytest.raises(ValueError, match="auto_sqnr: act_grids"):
        _auto.auto_sqnr(
            lambda s: graph, params, [], act_values=("act",), act_grids=np.zeros((2, 3, 3))
        )
    with pytest.raises(ValueError, match="one entry per layer"):
        _auto.auto_sqnr(
            lambda s: graph, params, [], kernels=[_auto.KernelSpec("fc2", "linear", "act", ())]
        )
    with pytest.raises(ValueError, match="no batch"):
        _auto.auto_sqnr(
            lambda s: graph, params, [], act_values=("act",), act_grids=np.zeros((1, 3, 3))
        )


def test_choose_picks_max_sqnr_and_breaks_ties_in_order():
    signal = np.array([100.0, 100.0, 0.0, 5.0])
    noise = np.array(
        [
            [1.0, 0.5, 2.0],  # method 1 best
            [1.0, 1.0, 1.0],  # tie -> first
            [1.0, 1.0, 1.0],  # no signal: all -inf -> first
            [np.nan, 0.0, 0.0],  # NaN counts as -inf; two infinite SQNRs tie -> index 1
        ]
    )
    choice, db = _auto.choose(signal, noise)
    np.testing.assert_array_equal(choice, [1, 0, 0, 1])
    assert db[0, 1] == pytest.approx(10 * math.log10(200))
    assert db[3, 0] == -np.inf and db[3, 1] == np.inf
    with pytest.raises(ValueError, match="choose: signal"):
        _auto.choose(np.ones(2), np.ones(3))


def test_choose_property_chosen_is_max(rng):
    for _ in range(20):
        sig = rng.uniform(0.1, 10, 7)
        noise = rng.uniform(0.01, 1, (7, 5))
        choice, db = _auto.choose(sig, noise)
        np.testing.assert_array_equal(db[np.arange(7), choice], db.max(1))


def test_error_curve_normalised_and_merged():
    # Two channels, candidates as ratios 0.5..1.5 of the reference, errors (r - 1)^2 scaled.
    r = np.linspace(0.5, 1.5, 11)
    ref = np.array([2.0, 4.0])
    cands = r[:, None] * ref
    errors = (r[:, None] - 1.0) ** 2 * np.array([1.0, 10.0])
    errors[0, 1] = np.nan  # a round not run
    x, y = _analysis.error_curve(errors, cands, ref)
    np.testing.assert_allclose(x, r, atol=1e-12)
    assert min(y) == 0.0 and max(y) == pytest.approx(1.0) and y[5] == 0.0
    # Ranges: the width is the scale.
    rng_c = np.stack([-cands, cands], -1)
    x2, _ = _analysis.error_curve(errors, rng_c, 2 * ref)
    np.testing.assert_allclose(x2, r, atol=1e-12)
    # Many points are binned down to n_points.
    x3, y3 = _analysis.error_curve(
        np.arange(500.0)[:, None], np.arange(1, 501.0)[:, None], 500.0, n_points=16
    )
    assert len(x3) == 16 and y3 == sorted(y3)
    assert _analysis.error_curve(np.zeros((0, 3)), np.zeros((0, 3)), np.ones(3)) == ([], [])


def test_rebin_keeps_total_and_range():
    edges = np.linspace(-1, 3, 2049)
    counts = np.arange(2048.0)
    e, k = _analysis.rebin(edges, counts, 256)
    assert len(k) == 256 and len(e) == 257
    assert sum(k) == pytest.approx(counts.sum())
    assert e[0] == -1 and e[-1] == pytest.approx(3)
    e2, k2 = _analysis.rebin(np.linspace(0, 1, 11), np.ones(10), 4)  # 10 bins -> 4 (padded)
    assert len(k2) == 4 and sum(k2) == 10 and len(e2) == 5


def test_layer_analysis_record():
    an = _analysis.layer_analysis(
        [ErrorMethod.MSE, "kl"],
        [30.0, float("inf")],
        1,
        params=[
            _analysis.params_dict(threshold=1.0, signed=False),
            _analysis.params_dict(range_min=[-1.0], range_max=[2.0]),
        ],
        curves=[([1.0], [0.0]), ([], [])],
        histogram=(np.linspace(0, 1, 9), np.ones(8)),
    )
    assert an["chosen"] == "kl" and an["methods"] == ["mse", "kl"]
    assert an["sqnr_db"] == {"mse": 30.0, "kl": float("inf")}
    assert an["params"]["mse"] == {"threshold": 1.0, "signed": False}
    assert an["params"]["kl"] == {"range_min": [-1.0], "range_max": [2.0]}
    assert len(an["histogram"]["counts"]) == 8
    with pytest.raises(ValueError, match="layer_analysis"):
        _analysis.layer_analysis(["mse"], [1.0, 2.0], 0, params=[{}])


# -- the pipeline with error method "auto" (torch-free, hand-built graph) --------------------


def _mlp(seed=0):
    r = np.random.default_rng(seed)
    g = Graph(
        ("x",),
        (
            Node("fc1", "linear", ("x",)),
            Node("act", "relu", ("fc1",)),
            Node("fc2", "linear", ("act",)),
        ),
        ("fc2",),
    )
    p = {
        "fc1": {
            "weight": r.standard_normal((16, 8)).astype(np.float32) * 0.5,
            "bias": r.standard_normal(16).astype(np.float32) * 0.1,
        },
        "fc2": {
            "weight": r.standard_normal((4, 16)).astype(np.float32) * 0.3,
            "bias": r.standard_normal(4).astype(np.float32) * 0.1,
        },
    }
    xs = [r.standard_normal((32, 8)).astype(np.float32) for _ in range(3)]
    xs[0][0, 0] = 8.0  # an outlier: clipping methods differ from NOCLIPPING
    return g, p, xs


def test_config_accepts_auto():
    import jq.core

    qc = jq.core.QuantizationConfig(activation_error_method="AUTO", weights_error_method="auto")
    assert _auto.is_auto(qc.activation_error_method) and qc.weights_error_method.value == "auto"
    with pytest.raises(ValueError, match="activation_error_method.*'auto'"):
        jq.core.QuantizationConfig(activation_error_method="autox")
    with pytest.raises(ValueError, match="error_method"):
        jq.weights_qparams(np.ones((2, 2), np.float32), error_method="auto")


def test_pipeline_auto_one_extra_pass_and_records_every_method(tmp_path):
    import jq.core
    from jq.ptq import quantize_graph

    g, p, xs = _mlp()
    calls = []

    def gen():
        calls.append(1)
        return ([x] for x in xs)

    qc = jq.core.QuantizationConfig(activation_error_method="auto", weights_error_method="auto")
    tp = jq.core.TargetPlatform(weights_n_bits=4, activation_n_bits=4)
    res = quantize_graph(
        g,
        p,
        gen,
        core_config=jq.core.CoreConfig(quantization_config=qc, progress=False),
        target_platform=tp,
    )
    assert len(calls) == 2  # statistics + the one AUTO pass (no run per method)
    info = res.info
    assert info.config["activation_error_method"] == "auto"
    for li in info.layers:
        an = li.analysis
        assert an is not None, li.name
        expect = _auto.candidate_methods(li.kind)
        assert an["methods"] == [m.value for m in expect]
        db = np.array([an["sqnr_db"][m] for m in an["methods"]])
        if "kept per layer" in info.notes[-1]:
            assert an["sqnr_db"][an["chosen"]] == db.max()  # the choice is the best figure
        assert li.error_method == an["chosen"]
        # The quantized model uses the chosen method's parameters.
        chosen = an["params"][an["chosen"]]
        if li.kind == "weights":
            np.testing.assert_allclose(li.threshold, chosen["threshold"], rtol=1e-6)
        else:
            assert li.threshold == pytest.approx(chosen["threshold"])
            assert len(an["histogram"]["counts"]) <= 256
        assert an["curves"]["noclipping"] == [[], []] and an["curves"]["mse"][0]
    # Layer by layer, AUTO's figure is at least every single method's (by construction), and
    # the kernel evaluation sees the real input statistics: weights HMSE is a candidate.
    assert "hmse" in info.layer("fc1", "weights").analysis["methods"]
    path = tmp_path / "info.json"
    info.save(path)
    back = jq.core.QuantizationInfo.load(path)
    assert back.layer("act").analysis == info.layer("act").analysis
    from jq import report

    html_path, _ = report(back, tmp_path / "r.html")
    with open(html_path, encoding="utf-8") as f:
        page = f.read()
    assert page.count("data:image/png;base64,") == len(info.layers)


def test_pipeline_auto_matches_the_chosen_single_method():
    """An AUTO run whose every layer chose MSE equals the plain MSE run (same params)."""
    import jq.core
    from jq.ptq import quantize_graph

    g, p, xs = _mlp()
    quiet = dict(progress=False)
    tp = jq.core.TargetPlatform(weights_n_bits=8, activation_n_bits=8)
    auto = quantize_graph(
        g,
        p,
        lambda: ([x] for x in xs),
        core_config=jq.core.CoreConfig(
            quantization_config=jq.core.QuantizationConfig(activation_error_method="auto"),
            **quiet,
        ),
        target_platform=tp,
    )
    chosen = {li.name: li.error_method for li in auto.info.layers if li.kind == "activation"}
    plain = quantize_graph(
        g,
        p,
        lambda: ([x] for x in xs),
        core_config=jq.core.CoreConfig(**quiet),
        target_platform=tp,
    )
    for li in plain.info.layers:
        if li.kind == "activation" and chosen[li.name] == "mse":
            assert auto.info.layer(li.name).threshold == li.threshold
        if li.kind == "weights":  # weights stayed MSE
            np.testing.assert_array_equal(
                auto.params[li.name]["weight"], plain.params[li.name]["weight"]
            )


@pytest.mark.parametrize("kind", ["weights", "activation"])
def test_pipeline_auto_output_sqnr_at_least_every_single_method(kind):
    """The per-layer choice is checked against each method applied to every layer (model output
    SQNR on the kept calibration batches): AUTO is never worse than the best single method by
    more than the check's margin."""
    from jq.ptq import quantize_graph

    g, p, xs = _mlp(1)
    xs = xs[:1]  # one batch: the check and the reported output SQNR see the same data
    tp = jq.core.TargetPlatform(weights_n_bits=4, activation_n_bits=4)

    def run(method):
        qc = jq.core.QuantizationConfig(**{f"{kind}_error_method": method})
        cfg = jq.core.CoreConfig(quantization_config=qc, progress=False)
        return quantize_graph(g, p, lambda: ([x] for x in xs), core_config=cfg, target_platform=tp)

    auto = run("auto")
    note = [n for n in auto.info.notes if n.startswith("auto: model output SQNR")]
    assert len(note) == 1 and "per layer" in note[0]
    for m in _auto.candidate_methods(kind):
        single = run(m.value).info.output_sqnr_db
        # A single method replaces the mix only past the margin: AUTO is within it of each.
        floor = single - AUTO_MARGIN_DB - 1e-9
        assert auto.info.output_sqnr_db >= floor, (m, auto.info.output_sqnr_db, single)
        assert f"{kind if kind == 'weights' else 'activations'} {m.value} " in note[0]


def test_keep_option_replaces_the_mix_only_past_the_margin():
    assert AUTO_MARGIN_DB == 0.1
    assert keep_option([47.13]) == 0
    assert keep_option([47.13, 47.13, 47.13 + AUTO_MARGIN_DB]) == 0  # not more than the margin
    assert keep_option([47.13, 47.00, 47.25, 47.30]) == 3  # the best of those past it
    assert keep_option([47.13, 47.30, 47.30]) == 1  # equal ones: the first
    assert keep_option([float("nan"), 47.0]) == 1 and keep_option([47.0, float("nan")]) == 0
    assert keep_option([10.0, 10.05], margin_db=0.0) == 1
    note = check_note(
        ["per layer", "weights mse", "weights hmse"], [47.1304, 47.1296, 47.1901], 0, 4
    )
    assert note == (
        "auto: model output SQNR on 4 calibration batches: per layer 47.130 dB, weights mse "
        "47.130 dB (-0.001), weights hmse 47.190 dB (+0.060); kept per layer (no single method "
        "beats it by more than 0.1 dB)"
    )
    note = check_note(["per layer", "weights kl"], [45.43, 45.98], 1, 4)
    assert note.endswith("kept weights kl (+0.550 dB over per layer, more than the 0.1 dB margin)")


CONV3 = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1)


def _issue14_net(seed):
    """Issue 14's case: conv + BN + SiLU, depthwise conv + ReLU, mean pool, linear; 4 batches
    of 8 at 32x32 (PyTorch's default init: uniform in +-1/sqrt(fan_in))."""
    r = np.random.default_rng(seed)

    def u(shape, fan):
        return (r.uniform(-1, 1, shape) / np.sqrt(fan)).astype(np.float32)

    nodes = (
        Node("conv", "conv", ("x",), CONV3),
        Node("bn", "batch_norm", ("conv",), {"eps": 1e-5}),
        Node("act", "silu", ("bn",)),
        Node("dw", "conv", ("act",), {**CONV3, "groups": 16}),
        Node("relu", "relu", ("dw",)),
        Node("pool", "mean", ("relu",), {"axis": (2, 3), "keepdims": False}),
        Node("fc", "linear", ("pool",)),
    )
    g = Graph(("x",), nodes, ("fc",), input_shapes=[(-1, 3, 32, 32)])
    p = {
        "conv": {"weight": u((16, 3, 3, 3), 27), "bias": u(16, 27)},
        "bn": {
            "weight": r.uniform(0.5, 1.5, 16).astype(np.float32),
            "bias": r.normal(0, 0.2, 16).astype(np.float32),
            "running_mean": r.normal(0, 0.3, 16).astype(np.float32),
            "running_var": r.uniform(0.5, 2, 16).astype(np.float32),
        },
        "dw": {"weight": u((16, 1, 3, 3), 9), "bias": u(16, 9)},
        "fc": {"weight": u((10, 16), 16), "bias": u(10, 16)},
    }
    xs = [r.standard_normal((8, 3, 32, 32)).astype(np.float32) for _ in range(4)]
    return g, p, xs


def _weights_auto(g, p, xs):
    from jq.ptq import quantize_graph

    qc = jq.core.QuantizationConfig(weights_error_method="auto")
    cfg = jq.core.CoreConfig(quantization_config=qc, progress=False)
    return quantize_graph(g, p, lambda: ([x] for x in xs), core_config=cfg).info


@pytest.mark.slow  # about 40 s on 2 loaded cores, nearly all of it compiling 6 x 3 searches
def test_auto_check_follows_the_per_layer_evidence_unless_beaten_past_the_margin():
    """Issue 14's net. Seed 4: the whole-model figures tie (per layer 46.20 dB, uniform
    noclipping 46.23 dB, every other option lower), so the per-layer choice stands: MSE, which
    has the best layer-output SQNR on all three kernels (NOCLIPPING's is 1.5-4 dB lower on
    each). Before the margin the check kept NOCLIPPING on every kernel for that 0.03 dB,
    printed with 2 decimals. Seed 0: uniform NOCLIPPING beats the mix (MSE) by about 0.55 dB,
    past the margin, so the check replaces it; the per-layer choice stays on record."""
    info = _weights_auto(*_issue14_net(4))
    kernels = [li for li in info.layers if li.kind == "weights"]
    assert [li.name for li in kernels] == ["conv", "dw", "fc"]
    for li in kernels:
        db = li.analysis["sqnr_db"]
        best = max(db, key=db.get)
        assert li.error_method == li.analysis["chosen"] == li.analysis["per_layer"] == best, li
        assert best == "mse" and db["mse"] > db["noclipping"] + 1.0
    (note,) = [n for n in info.notes if n.startswith("auto: model output SQNR")]
    assert "kept per layer (no single method beats it by more than 0.1 dB)" in note
    figures = dict(re.findall(r"(per layer|weights \w+) (-?\d+\.\d{3}) dB", note))
    assert len(figures) == 7  # the mix and 6 methods, with 3 decimals
    gains = [float(v) - float(figures["per layer"]) for v in figures.values()]
    assert 0 < max(gains) <= AUTO_MARGIN_DB  # a uniform method is ahead, within the margin

    info = _weights_auto(*_issue14_net(0))
    for li in info.layers:
        if li.kind == "weights":
            assert li.error_method == li.analysis["chosen"] == "noclipping"
            assert li.analysis["per_layer"] == "mse"
    (note,) = [n for n in info.notes if n.startswith("auto: model output SQNR")]
    assert "kept weights noclipping (+0.5" in note and "more than the 0.1 dB margin" in note
