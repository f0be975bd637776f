"""End-to-end PTQ of a digits-sized torch CNN: MCT's call with jq, export, info, bad input."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
jq_torch = pytest.importorskip("jq_torch")

import jq  # noqa: E402
import jq.core  # noqa: E402
import jq.ptq  # noqa: E402
from jq._apply import apply  # noqa: E402

QUIET = jq.core.CoreConfig(progress=False)


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.fc = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = CNN().eval()
    with torch.no_grad():
        m.bn1.running_mean.uniform_(-0.3, 0.3)
        m.bn1.running_var.uniform_(0.5, 2.0)
    return m


@pytest.fixture(scope="module")
def batches():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(16, 1, 8, 8, generator=g) * 2 - 0.5 for _ in range(3)]


def test_mct_call_runs_and_export_matches_jax(model, batches, tmp_path):
    qc = jq.core.QuantizationConfig(
        activation_error_method=jq.core.QuantizationErrorMethod.NOCLIPPING
    )
    core = jq.core.CoreConfig(quantization_config=qc, progress=False)
    qmodel, info = jq.ptq.pytorch_post_training_quantization(
        model, lambda: ([b] for b in batches), core_config=core
    )
    assert isinstance(qmodel, torch.nn.Module)
    x = batches[0]
    with torch.no_grad():
        yq, yf = qmodel(x).numpy(), model(x).numpy()
    assert 10 * np.log10(np.sum(yf**2) / np.sum((yf - yq) ** 2)) > 25
    assert info.config["activation_error_method"] == "noclipping"
    assert {li.name for li in info.layers if li.kind == "weights"} == {"conv1", "conv2", "fc"}
    path = tmp_path / "info.json"
    info.save(path)
    assert jq.core.QuantizationInfo.load(path) == jq.core.QuantizationInfo.from_dict(info.to_dict())

    # The exported module computes the quantized JAX graph (same pipeline, graph form).
    graph, params = jq_torch.from_torch(model, (x,))
    res = jq.ptq.quantize_graph(
        graph, params, lambda: ([b.numpy()] for b in batches), core_config=core
    )
    yj = np.asarray(jax.jit(apply, static_argnums=0)(res.graph, res.params, x.numpy()))
    with torch.no_grad():
        yt = jq_torch.to_torch(res.graph, res.params)(x).numpy()
    np.testing.assert_allclose(yt, yj, rtol=1e-4, atol=1e-4 * np.abs(yj).max())
    np.testing.assert_allclose(yq, yt, rtol=1e-6, atol=1e-7)


def test_bad_input_and_unsupported_layer(model, batches):
    fn = jq.ptq.pytorch_post_training_quantization
    with pytest.raises(ValueError, match="no batch"):
        fn(model, lambda: iter(()), core_config=QUIET)
    nan = batches[0].clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fn(model, lambda: iter([[nan]]), core_config=QUIET)
    with pytest.raises(TypeError, match="core_config"):
        fn(model, lambda: iter([[batches[0]]]), core_config=jq.core.QuantizationConfig())
    with pytest.raises(NotImplementedError, match="mixed precision"):
        fn(model, lambda: iter([[batches[0]]]), target_resource_utilization=object())

    class Cum(torch.nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 1)

    with pytest.raises(jq_torch.UnsupportedOpError, match="cumsum"):
        fn(Cum().eval(), lambda: iter([[batches[0]]]), core_config=QUIET)


def test_config_field_names_and_defaults_match_mct():
    mct = pytest.importorskip("model_compression_toolkit")
    ours = {f.name: f.default for f in dataclasses.fields(jq.core.QuantizationConfig)}
    theirs = {f.name: f.default for f in dataclasses.fields(mct.core.QuantizationConfig)}
    assert set(ours) - set(theirs) == {"mct_compat"}
    assert set(theirs) <= set(ours)
    for name, default in theirs.items():
        mine = ours[name]
        if hasattr(default, "name"):
            assert mine.name == default.name, name
        else:
            assert mine == default, name
    # MCT's own enum members are accepted.
    qc = jq.core.QuantizationConfig(activation_error_method=mct.core.QuantizationErrorMethod.KL)
    assert qc.activation_error_method is jq.core.QuantizationErrorMethod.KL
    # An MCT target platform object is read (its default activation and conv kernel configs).
    tpc = mct.get_target_platform_capabilities(tpc_version="1.0", device_type="imx500")
    assert jq.ptq._platform(tpc) == jq.core.TargetPlatform()
