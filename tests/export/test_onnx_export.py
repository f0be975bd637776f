"""jq.exporter on a small quantized CNN and a class-token attention net: files that
onnx.checker accepts and onnxruntime (CPU) runs.

Tolerances: FAKELY_QUANT with ORT's optimizations off equals the jq module exactly (power-of-two
scales: ``x / scale`` and jq's ``x * (1 / scale)`` are the same float32); INT8 at ORT's
default level (integer kernels) is within one step of the last quantizer; the int8
initializers equal ``round(w / scale)`` of the module's kernels exactly.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jq_torch = pytest.importorskip("jq_torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from _export_models import CNN  # noqa: E402

import jq.core  # noqa: E402
import jq.exporter  # noqa: E402
import jq.ptq  # noqa: E402

QUIET = jq.core.CoreConfig(progress=False)
FMT = jq.exporter.QuantizationFormat
SER = jq.exporter.PytorchExportSerializationFormat


class Tokens(torch.nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.embed = torch.nn.Linear(4, d)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, d))
        self.norm = torch.nn.LayerNorm(d)
        self.attn = torch.nn.MultiheadAttention(d, 2, batch_first=True)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 32), torch.nn.GELU())
        self.head = torch.nn.Linear(32, 3)

    def forward(self, x):
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.embed(x)], dim=1)
        x = x + self.attn(self.norm(x), self.norm(x), self.norm(x), need_weights=False)[0]
        return self.head(self.mlp(x[:, 0]))


def _quantize(model, shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    batches = [torch.rand(*shape, generator=g) * 2 - 0.5 for _ in range(3)]
    qmodel, _ = jq.ptq.pytorch_post_training_quantization(
        model, lambda: ([b] for b in batches), core_config=QUIET
    )
    return qmodel, lambda: ([b] for b in batches)


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return _quantize(CNN().eval(), (8, 1, 8, 8))


def _session(path, level="disable", optimized=None):
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }[level]
    if optimized:
        so.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _run(session, x):
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _export(qmodel, data, path, fmt, **kw):
    jq.exporter.pytorch_export_model(qmodel, path, data, quantization_format=fmt, **kw)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def _last_step(qmodel):
    last = qmodel.graph.outputs[0]
    return float(qmodel.node_params(last)["scale"])


def test_fakely_quant_equals_the_module_at_any_batch(cnn, tmp_path):
    qmodel, data = cnn
    path = _export(qmodel, data, tmp_path / "fq.onnx", FMT.FAKELY_QUANT)
    types = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert types.count("QuantizeLinear") == sum(n.op == "fake_quant" for n in qmodel.graph.nodes)
    session = _session(path)
    for batch in (1, 7):
        x = torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            np.testing.assert_array_equal(_run(session, x), qmodel(x).numpy())


def test_int8_runs_integer_kernels_within_one_step(cnn, tmp_path):
    qmodel, data = cnn
    path = _export(qmodel, data, tmp_path / "int8.onnx", FMT.INT8)
    model = onnx.load(str(path))
    ints = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    w = ints["conv2.weight.int"]
    assert w.dtype == np.int8
    layer = next(q for q in qmodel.quant_layers if q.name == "conv2" and q.kind == "weights")
    scale = np.asarray(layer.threshold, np.float32) / 128
    wq = qmodel.node_params("conv2")["weight"].numpy()
    np.testing.assert_array_equal(w, np.round(wq / scale.reshape(-1, 1, 1, 1)).astype(np.int8))
    opt = tmp_path / "int8.opt.onnx"
    session = _session(path, "extended", opt)
    kernels = {n.op_type for n in onnx.load(str(opt)).graph.node}
    assert {"QLinearConv", "QGemm"} <= kernels, kernels
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = qmodel(x).numpy()
    assert np.max(np.abs(_run(session, x) - want)) <= _last_step(qmodel) * (1 + 1e-6)


def test_ties_round_half_to_even_like_jq(cnn, tmp_path):
    """Inputs exactly halfway between levels of the input quantizer land where jq puts them."""
    qmodel, data = cnn
    path = _export(qmodel, data, tmp_path / "fq.onnx", FMT.FAKELY_QUANT)
    first = next(n for n in qmodel.graph.nodes if n.op == "fake_quant")
    s = float(qmodel.node_params(first.name)["scale"])
    x = torch.full((1, 1, 8, 8), 0.0)
    x.view(-1)[:8] = torch.tensor([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 4.5]) * s
    with torch.no_grad():
        np.testing.assert_array_equal(_run(_session(path), x), qmodel(x).numpy())


def test_attention_net_exports_with_a_dynamic_batch(tmp_path):
    torch.manual_seed(0)
    qmodel, data = _quantize(Tokens().eval(), (4, 5, 4))
    for fmt in (FMT.FAKELY_QUANT, FMT.INT8):
        path = _export(qmodel, data, tmp_path / f"{fmt.name}.onnx", fmt, onnx_opset_version=21)
        session = _session(path)
        for batch in (1, 3):
            x = torch.rand(batch, 5, 4, generator=torch.Generator().manual_seed(batch))
            with torch.no_grad():
                want = qmodel(x).numpy()
            tol = 1e-5 if fmt is FMT.FAKELY_QUANT else _last_step(qmodel) * (1 + 1e-6)
            np.testing.assert_allclose(_run(session, x), want, atol=tol, rtol=0)


def test_torchscript_fakely_quant(cnn, tmp_path):
    qmodel, data = cnn
    path = tmp_path / "q.pt"
    jq.exporter.pytorch_export_model(
        qmodel, path, data, serialization_format=SER.TORCHSCRIPT, quantization_format="fakely_quant"
    )
    loaded = torch.jit.load(str(path))
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(loaded(x), qmodel(x))


def test_mct_enum_members_are_accepted(cnn, tmp_path):
    mct = pytest.importorskip("model_compression_toolkit")
    qmodel, data = cnn
    path = tmp_path / "m.onnx"
    jq.exporter.pytorch_export_model(
        qmodel,
        path,
        data,
        serialization_format=mct.exporter.PytorchExportSerializationFormat.ONNX,
        quantization_format=mct.exporter.QuantizationFormat.FAKELY_QUANT,
    )
    assert path.stat().st_size > 0


def _no_leftovers(folder):
    return [p for p in os.listdir(folder) if p.startswith(".jq-export-")] == []


def test_bad_input_is_named_and_leaves_no_file(cnn, tmp_path):
    qmodel, data = cnn
    path = tmp_path / "bad.onnx"
    export = jq.exporter.pytorch_export_model
    with pytest.raises(ValueError, match="valid: FAKELY_QUANT, INT8, MCTQ"):
        export(qmodel, path, data, quantization_format="int4")
    with pytest.raises(ValueError, match="valid: TORCHSCRIPT, ONNX"):
        export(qmodel, path, data, serialization_format="tflite")
    with pytest.raises(ValueError, match="TORCHSCRIPT supports quantization_format FAKELY_QUANT"):
        export(qmodel, path, data, serialization_format="torchscript", quantization_format="int8")
    with pytest.raises(ValueError, match="does not exist"):
        export(qmodel, tmp_path / "missing" / "m.onnx", data, quantization_format="int8")
    with pytest.raises(ValueError, match="is a folder"):
        export(qmodel, tmp_path, data, quantization_format="int8")
    with pytest.raises(TypeError, match="JQModule"):
        export(CNN().eval(), path, data, quantization_format="int8")
    graph, params = jq_torch.from_torch(CNN().eval(), torch.zeros(2, 1, 8, 8))
    with pytest.raises(TypeError, match="float jq module"):
        export(jq_torch.to_torch(graph, params), path, data, quantization_format="int8")
    with pytest.raises(ValueError, match="opset 13 or newer"):
        export(qmodel, path, data, quantization_format="fakely_quant", onnx_opset_version=11)
    assert not path.exists() and _no_leftovers(tmp_path)


def test_sixteen_bit_values_need_opset_21_in_int8(tmp_path):
    """Pinned below 21, INT8 with 16-bit values is an error; left out, the opset is 21."""
    torch.manual_seed(0)
    nn = torch.nn  # SiLU into a padded conv: shift-negative correction quantizes it at 16 bits
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU(), nn.Conv2d(8, 8, 3, padding=1)
    ).eval()
    xs = [torch.randn(8, 3, 8, 8) * 3 for _ in range(3)]
    qmodel, _ = jq.ptq.pytorch_post_training_quantization(
        model, lambda: ([x] for x in xs), core_config=QUIET
    )
    data = lambda: ([x] for x in xs)  # noqa: E731
    assert 16 in {q.n_bits for q in qmodel.quant_layers}
    path = tmp_path / "snc.onnx"
    with pytest.raises(ValueError, match="too old for INT8 with \\[16\\]-bit values"):
        jq.exporter.pytorch_export_model(
            qmodel, path, data, quantization_format="int8", onnx_opset_version=20
        )
    assert not path.exists() and _no_leftovers(tmp_path)
    jq.exporter.pytorch_export_model(qmodel, path, data, quantization_format="int8")
    assert onnx.load(str(path)).opset_import[0].version == 21  # left out: what the file needs
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 3
    with torch.no_grad():
        want = qmodel(x).numpy()
    for fmt, opset in ((FMT.FAKELY_QUANT, 20), (FMT.FAKELY_QUANT, 21), (FMT.INT8, 21)):
        p = _export(
            qmodel, data, tmp_path / f"{fmt.name}{opset}.onnx", fmt, onnx_opset_version=opset
        )
        tol = 0.0 if fmt is FMT.FAKELY_QUANT else _last_step(qmodel) * (1 + 1e-6)
        np.testing.assert_allclose(_run(_session(p), x), want, atol=tol, rtol=0)


def test_import_jq_exporter_imports_neither_torch_nor_onnx():
    import subprocess
    import sys

    code = "import sys, jq, jq.exporter; print([m for m in ('torch', 'onnx') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_steered_layers_export_with_their_own_bit_widths(tmp_path):
    """Per-layer settings reach the files: a 4-bit kernel is an int8 initializer within
    [-8, 7], a kernel steered off stays float, a 6-bit and a 16-bit activation get their grids
    (the 16-bit one int16, opset 21); FAKELY_QUANT equals the module exactly."""
    torch.manual_seed(0)
    overrides = {
        "conv2": {"weights_n_bits": 4},
        "relu_1": {"activation_n_bits": 6},
        "fc": {"enable_weights_quantization": False, "activation_n_bits": 16},
    }
    g = torch.Generator().manual_seed(1)
    batches = [torch.rand(8, 1, 8, 8, generator=g) * 2 - 0.5 for _ in range(3)]

    def data():
        return ([b] for b in batches)

    core = jq.core.CoreConfig(progress=False, overrides=overrides)
    qmodel, info = jq.ptq.pytorch_post_training_quantization(CNN().eval(), data, core_config=core)
    bits = {(q.name, q.kind): q.n_bits for q in qmodel.quant_layers}
    assert bits[("conv2", "weights")] == 4 and ("fc", "weights") not in bits
    assert (bits[("relu_1", "activation")], bits[("fc", "activation")]) == (6, 16)
    path = _export(qmodel, data, tmp_path / "int8.onnx", FMT.INT8, onnx_opset_version=21)
    ints = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    w = ints["conv2.weight.int"]
    assert w.dtype == np.int8 and w.min() >= -8 and w.max() <= 7
    assert "fc.weight.int" not in ints and ints["fc.act_quant.zero_point"].dtype == np.int16
    path = _export(qmodel, data, tmp_path / "fq.onnx", FMT.FAKELY_QUANT, onnx_opset_version=21)
    x = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        np.testing.assert_array_equal(_run(_session(path), x), qmodel(x).numpy())
