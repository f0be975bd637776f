"""The user's mistake is named (issue 22, "Name the user's mistake"): calibration batches that
do not fit the model's inputs, a missing output folder for any writer, and the small items
(JQModule's repr, unknown-layer suggestions, config messages, TorchScript's notices, the AUTO
report's axis and reasons)."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

import jq
import jq.core
from jq import Graph, Node
from jq._src.ptq import steering as _st
from jq._src.ptq.placement import plan_quantization

CFG = jq.core.CoreConfig(progress=False)
RNG = np.random.default_rng(0)
X = RNG.random((2, 3, 8, 8), dtype=np.float32)


def _torch_net():
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture
def no_export(monkeypatch):
    """torch.export.export fails the test if reached: the checks run before it."""
    torch = pytest.importorskip("torch")

    def refuse(*a, **k):
        raise AssertionError("torch.export ran")

    monkeypatch.setattr(torch.export, "export", refuse)


# -- batches that do not fit the model's inputs ------------------------------------------


@pytest.mark.parametrize(
    "batch, message",
    [
        (  # the case: (x, label) for forward(self, x)
            (X, np.zeros(2, np.float32)),
            "representative batch 0 has 2 arrays; Net.forward takes 1 input (x); a batch is "
            "a list or tuple with one array per model input (yield [x], not (x, label))",
        ),
        (
            X[0],
            "representative batch 0, input 0 (x) has shape (3, 8, 8); conv (Conv2d) expects "
            "(batch, 3, H, W): add the batch axis (x[None] or x.unsqueeze(0))",
        ),
        (
            [X.transpose(0, 2, 3, 1)],
            "representative batch 0, input 0 (x) has shape (2, 8, 8, 3); conv (Conv2d) expects "
            "(batch, 3, H, W), channels first; channels last? move them first "
            "(x.permute(0, 3, 1, 2))",
        ),
        (
            [X[:, :, :, :, None]],
            "representative batch 0, input 0 (x) has shape (2, 3, 8, 8, 1); conv (Conv2d) "
            "expects rank 4, (batch, 3, H, W)",
        ),
    ],
    ids=["x-label", "no-batch-axis", "channels-last", "rank-5"],
)
def test_torch_batches_that_do_not_fit_are_named_before_export(no_export, batch, message):
    import jq.ptq

    with pytest.raises(ValueError) as e:
        jq.ptq.pytorch_post_training_quantization(
            _torch_net(), lambda: iter([batch]), core_config=CFG
        )
    assert str(e.value) == "pytorch_post_training_quantization: " + message


def test_torch_linear_input_and_too_few_inputs_are_named(no_export):
    torch = pytest.importorskip("torch")
    import jq.ptq

    lin = torch.nn.Sequential(torch.nn.Linear(5, 3)).eval()
    with pytest.raises(ValueError, match=r"input 0 \(input\) has shape \(2, 4\); 0 \(Linear\) "
                       r"expects \(batch, \.\.\., 5\), features last"):  # fmt: skip
        jq.ptq.pytorch_post_training_quantization(
            lin, lambda: iter([np.ones((2, 4), np.float32)]), core_config=CFG
        )

    class Two(torch.nn.Module):
        def forward(self, a, b, scale=1.0):
            return (a + b) * scale

    with pytest.raises(ValueError, match=r"has 1 array; Two.forward takes 2 to 3 inputs \(a, b, "):
        jq.ptq.pytorch_post_training_quantization(Two(), lambda: iter([X]), core_config=CFG)


def test_torch_check_leaves_a_fitting_model_alone():
    """A fitting batch passes the check (the run completes) and the checking forward does not
    run the model past its first layer: a module after it is never called by the check."""
    torch = pytest.importorskip("torch")
    from jq_torch._inputs import check_inputs

    net = _torch_net()
    calls = []
    net.fc.register_forward_pre_hook(lambda m, a: calls.append(1))
    check_inputs(net, [X], "fn")
    assert calls == []
    with torch.no_grad():
        net(torch.from_numpy(X))
    assert calls == [1]


def test_flax_x_label_batch_is_named():
    nnx = pytest.importorskip("flax.nnx")
    import jq.ptq

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.fc = nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            return self.fc(x)

    x = RNG.random((2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"batch 0 has 2 arrays; Net.__call__ takes 1 input \(x\)"):
        jq.ptq.flax_post_training_quantization(
            Net(nnx.Rngs(0)), lambda: iter([(x, np.zeros(2))]), core_config=CFG
        )


# -- one folder rule for every writer ------------------------------------------------------


def _info():
    layer = jq.core.LayerInfo(
        name="relu", kind="activation", op="relu", n_bits=8, method="power_of_two",
        error_method="mse", signed=False, threshold=4.0, sqnr_db=31.5,
    )  # fmt: skip
    return jq.core.QuantizationInfo(layers=(layer,), output_sqnr_db=30.0)


def test_info_save_and_report_name_a_missing_folder_and_write_nothing(tmp_path):
    missing = tmp_path / "no" / "such"
    want = f"folder {str(missing)!r} does not exist"
    with pytest.raises(ValueError, match="QuantizationInfo.save: cannot write .*" + want):
        _info().save(missing / "info.json")
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="jq.report: cannot write .*" + want):
        jq.report(_info(), missing / "report.html")
    assert list(tmp_path.iterdir()) == []  # no folder created


def test_info_save_is_whole_or_nothing(tmp_path):
    """A save that fails midway (a config value JSON cannot write) leaves the old file as it
    was and no temporary file."""
    path = tmp_path / "info.json"
    _info().save(path)
    before = path.read_text()
    bad = jq.core.QuantizationInfo(layers=_info().layers, config={"x": object()})
    with pytest.raises(TypeError):
        bad.save(path)
    assert path.read_text() == before and os.listdir(tmp_path) == ["info.json"]
    assert json.loads(before)["output_sqnr_db"] == 30.0


def test_exporter_uses_the_same_rule(tmp_path):
    from jq._src.export.files import check_writable
    from jq._src.runtime.paths import check_writable as shared

    missing = tmp_path / "gone" / "m.onnx"
    with pytest.raises(ValueError) as a:
        check_writable(missing, "pytorch_export_model")
    with pytest.raises(ValueError) as b:
        shared(missing, "pytorch_export_model")
    assert str(a.value) == str(b.value).replace("path", "save_model_path", 0) and (
        f"folder {str(missing.parent)!r} does not exist" in str(a.value)
    )


# -- the small items -----------------------------------------------------------------------


def test_quantized_module_repr_says_what_is_quantized():
    torch = pytest.importorskip("torch")
    import jq.ptq

    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 36, 2)
    ).eval()
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    q, _ = jq.ptq.pytorch_post_training_quantization(m, lambda: iter([[x]]), core_config=CFG)
    # 411 = the float model's 112 + 290 params and 9 quantizer values (thresholds, ranges).
    assert repr(q) == (
        "JQModule(7 nodes, 411 params, inputs: input (-1, 3, 8, 8); quantized: 2 kernels "
        "8-bit symmetric, 3 activations 8-bit power_of_two)"
    )


def _resnet_like() -> Graph:
    conv = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1)
    nodes = (
        Node("conv1", "conv", ("x",), conv),
        Node("relu", "relu", ("conv1",)),
        Node("layer1.0.conv1", "conv", ("relu",), conv),
        Node("layer1.0.add", "add", ("layer1.0.conv1", "relu")),
        Node("layer1.1.conv1", "conv", ("layer1.0.add",), conv),
        Node("layer1.1.add", "add", ("layer1.1.conv1", "layer1.0.add")),
        Node("avgpool", "mean", ("layer1.1.add",), {"axis": (2, 3), "keepdims": False}),
        Node("fc", "linear", ("avgpool",)),
    )
    return Graph(("x",), nodes, ("fc",), input_shapes=[(-1, 3, 8, 8)])


@pytest.mark.parametrize(
    "name, first",
    [
        ("classifier", "'fc' (the model's last linear layer)"),
        ("head", "'fc' (the model's last linear layer)"),
        ("stem", "'conv1' (the model's first conv layer)"),
        ("layer1.1.ad", "'layer1.1.add'"),  # a misspelling still gets spelling suggestions
    ],
)
def test_unknown_layer_suggestions_know_roles(name, first):
    g = _resnet_like()
    core = jq.core.CoreConfig(overrides={name: {"weights_n_bits": 4}})
    with pytest.raises(ValueError) as e:
        _st.resolve(core.rules, g, plan_quantization(g))
    assert f"matches no node of the model; closest names: {first}" in str(e.value)


def test_config_error_names_its_class_once():
    with pytest.raises(ValueError) as e:
        jq.core.QuantizationConfig(activation_error_method="best")
    assert str(e.value).startswith(
        "QuantizationConfig: activation_error_method: unknown error_method='best'; expected"
    )
    assert str(e.value).count("QuantizationConfig") == 1


def test_torchscript_export_prints_no_future_warnings(tmp_path):
    torch = pytest.importorskip("torch")
    import jq.exporter
    import jq.ptq

    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    q, _ = jq.ptq.pytorch_post_training_quantization(m, lambda: iter([[X]]), core_config=CFG)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        jq.exporter.pytorch_export_model(
            q, str(tmp_path / "m.pt"), lambda: iter([[X]]),
            serialization_format=jq.exporter.PytorchExportSerializationFormat.TORCHSCRIPT,
            quantization_format=jq.exporter.QuantizationFormat.FAKELY_QUANT,
        )  # fmt: skip
    assert [str(w.message) for w in rec] == []
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(torch.from_numpy(X)), q(torch.from_numpy(X)))


def test_report_bars_start_at_zero_and_overrides_carry_their_reason(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    from jq._src.ptq import auto_analysis as _analysis
    from jq._src.ptq.auto_select import override_reason
    from jq._src.report import report as _rp

    methods = ["mse", "kl"]
    an = _analysis.layer_analysis(methods, np.array([48.5, 49.5]), 1, params=[{}, {}], curves=None)
    fig, ax = plt.subplots()
    _rp._draw_sqnr(ax, an, methods, "kl")
    assert ax.get_ylim()[0] == 0.0
    plt.close(fig)

    reason = override_reason("activations kl", 45.43, 45.98)
    an = dict(an, per_layer="mse", chosen="kl", reason=reason)
    layer = dict(
        name="relu", kind="activation", op="relu", n_bits=8, method="power_of_two",
        error_method="kl", signed=False, threshold=4.0, sqnr_db=31.5, analysis=an,
    )  # fmt: skip
    html_path, md_path = jq.report({"layers": [layer]}, tmp_path / "r.html")
    with open(html_path, encoding="utf-8") as f:
        page = f.read()
    assert "kl (per layer: mse)" in page
    assert "why kl, not this layer's own best mse: the whole-model check kept" in page
    with open(md_path, encoding="utf-8") as f:
        assert "+0.550 dB, more than the 0.1 dB margin" in f.read()
