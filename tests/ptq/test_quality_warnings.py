"""Bad results are said (``jq/_src/ptq/quality.py``): a :class:`jq.QualityWarning` and the same
text in ``info.notes`` when the output SQNR is under ``jq.SQNR_FLOOR_DB``, when thresholds sit
at ``min_threshold`` on most layers, or when the calibration activations are all near zero.

The user's case (issue 22): an untrained network whose activations shrink to ~1e-10. The fast
tests build it small (three layers whose weights are scaled by 1e-5, so every activation after
the input is below ``min_threshold``); the slow one is the issue's random-init
mobilenet_v3_small (one 64-px batch).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import jq
import jq.core
from jq import Graph, Node
from jq._src.ptq.quality import SQNR_FLOOR_MIN_BITS, quality_findings
from jq.core import LayerInfo
from jq.ptq import quantize_graph

CFG = jq.core.CoreConfig(progress=False)
CONV = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1)


def _net(scale: float, seed: int = 0):
    """x (N,3,8,8) -> c1 -> relu -> c2 -> relu_1 -> mean -> fc, weights ~N(0, 0.3) * scale."""
    r = np.random.default_rng(seed)
    nodes = (
        Node("c1", "conv", ("x",), CONV),
        Node("relu", "relu", ("c1",)),
        Node("c2", "conv", ("relu",), CONV),
        Node("relu_1", "relu", ("c2",)),
        Node("mean", "mean", ("relu_1",), {"axis": (2, 3), "keepdims": False}),
        Node("fc", "linear", ("mean",)),
    )
    g = Graph(("x",), nodes, ("fc",), input_shapes=[(-1, 3, 8, 8)])
    f32 = np.float32
    p = {
        "c1": {"weight": (r.normal(0, 0.3, (8, 3, 3, 3)) * scale).astype(f32)},
        "c2": {"weight": (r.normal(0, 0.3, (8, 8, 3, 3)) * scale).astype(f32)},
        "fc": {"weight": (r.normal(0, 0.3, (4, 8)) * scale).astype(f32)},
    }
    for v in p.values():
        v["bias"] = np.zeros(v["weight"].shape[0], f32)
    x = r.uniform(0, 1, (4, 3, 8, 8)).astype(f32)
    return g, p, x


def _quantize(scale: float, input_scale: float = 1.0):
    g, p, x = _net(scale)
    return quantize_graph(g, p, lambda: iter([[x * input_scale]]), core_config=CFG)


def test_untrained_model_warns_three_times_and_notes_say_the_same():
    """Activations ~1e-10 (weights scaled by 1e-5): output SQNR 0 dB, every kernel and most
    activation thresholds at the 2**-16 floor, 3 of 4 activations after the input below it;
    each is a QualityWarning naming the figures, and the notes end with the same sentences."""
    with pytest.warns(jq.QualityWarning) as rec:
        res = _quantize(1e-5)
    msgs = [str(w.message) for w in rec if issubclass(w.category, jq.QualityWarning)]
    assert len(msgs) == 3, msgs
    assert res.info.output_sqnr_db < jq.SQNR_FLOOR_DB
    assert "output SQNR 0.00 dB is below the floor of 10 dB" in msgs[0]
    assert "clamp floor min_threshold=1.53e-05 on 3 of 3 kernels" in msgs[1]
    assert "near zero: 3 of 4 quantized activations never exceed" in msgs[2]
    assert "an untrained (random-init) model" in msgs[2]
    assert all(m.startswith("jq.ptq.quantize_graph: ") for m in msgs)
    # Attributed to the caller's line, not to jq's internals.
    assert {w.filename for w in rec} == {__file__}
    warned = [n.removeprefix("warning: ") for n in res.info.notes if n.startswith("warning: ")]
    assert warned == [m.removeprefix("jq.ptq.quantize_graph: ") for m in msgs]
    # Every threshold the warning counts really is the floor.
    floor = res.info.config["min_threshold"]
    assert all(np.max(li.threshold) == floor for li in res.info.layers if li.kind == "weights")


def test_tiny_inputs_are_named_as_the_likely_cause():
    """The same near-zero activations from a sound model fed inputs scaled by 1e-9: the
    warning blames the inputs, quoting their largest magnitude."""
    with pytest.warns(jq.QualityWarning) as rec:
        _quantize(1.0, input_scale=1e-9)
    (near,) = [str(w.message) for w in rec if "near zero" in str(w.message)]
    assert "likely cause: inputs scaled far too small (they reach only |x| = 9.98e-10)" in near


def test_a_sound_model_gets_no_warning_and_no_warning_notes():
    with warnings.catch_warnings():
        warnings.simplefilter("error", jq.QualityWarning)
        res = _quantize(1.0)
    assert res.info.output_sqnr_db > jq.SQNR_FLOOR_DB
    assert not [n for n in res.info.notes if n.startswith("warning:")]


def _layer(name, kind, threshold, n_bits=8):
    return LayerInfo(
        name=name, kind=kind, op="conv", n_bits=n_bits, method="power_of_two",
        error_method="mse", signed=False, threshold=threshold,
    )  # fmt: skip


def _find(layers, sqnr, peaks=None, inputs=None, floor=2.0**-16):
    peaks = peaks if peaks is not None else {"a": 1.0, "b": 2.0}
    inputs = inputs if inputs is not None else {"x": 1.0}
    both = {**peaks, **inputs}
    return quality_findings(
        layers,
        sqnr,
        minimum={k: -v for k, v in both.items()},
        maximum=both,
        inputs=tuple(inputs),
        min_threshold=floor,
    )


def test_findings_floors_are_where_documented():
    """SQNR: 9.99 dB is bad, 10 dB is not; under SQNR_FLOOR_MIN_BITS bits it is not checked;
    ``inf`` (exact) and ``None`` (no float outputs) are not checked. Clamp floor: more than
    half of one kind. Near zero: more than half of the non-input activations."""
    sound = [_layer("a", "activation", 1.0), _layer("k", "weights", [0.5, 0.25])]
    assert _find(sound, 30.0) == ()
    assert _find(sound, jq.SQNR_FLOOR_DB) == ()
    assert "output SQNR 9.99 dB" in _find(sound, 9.99)[0]
    low = [_layer("a", "activation", 1.0, n_bits=SQNR_FLOOR_MIN_BITS - 1)]
    assert _find(low, 3.0) == ()
    assert _find(sound, float("inf")) == () and _find(sound, None) == ()
    assert "output SQNR -inf dB" in _find(sound, float("-inf"))[0]
    f = 2.0**-16
    half = [_layer("a", "activation", f), _layer("b", "activation", 1.0)]
    assert _find(half, 30.0) == ()  # 1 of 2 is not most
    most = [*half, _layer("c", "activation", f)]
    (msg,) = _find(most, 30.0)
    assert msg.startswith("thresholds at the clamp floor") and "2 of 3 activation" in msg
    (msg,) = _find(sound, 30.0, peaks={"a": 1e-10, "b": 1e-9, "c": 1.0})
    assert msg.startswith("calibration activations near zero: 2 of 3")
    assert "smallest 1e-10 at a" in msg and "reach |x| = 1" in msg
    assert _find(sound, 30.0, peaks={"a": 1e-10, "b": 1.0}) == ()  # half is not all


@pytest.mark.slow
def test_random_init_mobilenet_v3_small_warns():
    """The issue's case: torchvision's mobilenet_v3_small, random init, one 64-px batch of
    uniform [0, 1) images. Its activations shrink to ~1e-10: output SQNR 0 dB, 56 of 91
    activation thresholds at the floor. ~25 s on 2 cores."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    import jq.ptq

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small().eval()
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    with pytest.warns(jq.QualityWarning) as rec:
        _, info = jq.ptq.pytorch_post_training_quantization(
            model, lambda: iter([[x]]), core_config=CFG
        )
    msgs = " | ".join(str(w.message) for w in rec)
    assert info.output_sqnr_db == 0.0
    assert "output SQNR 0.00 dB is below the floor" in msgs
    assert "activation quantizers" in msgs and "clamp floor" in msgs
    assert "calibration activations near zero" in msgs and "untrained" in msgs
    assert sum(n.startswith("warning: ") for n in info.notes) == 3
