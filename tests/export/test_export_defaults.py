"""A newcomer's defaults: ``jq.exporter.pytorch_export_model`` without ``onnx_opset_version``
writes the lowest opset the file needs (logged on ``jq.exporter``), and the default MCTQ file
says what runs it.

The model is torchvision's mobilenet_v3_small (random init with random batch-norm statistics,
64x64 inputs, two calibration batches of two): jq's default shift-negative correction puts
Hardswish outputs at 16 bits, so its INT8 file needs int16 QuantizeLinear/DequantizeLinear,
i.e. opset 21.

Tolerances, output steps of the INT8 file (at onnxruntime's extended level: QLinearConv,
QGemm) from the jq module: at most 8, 99% within 4. Measured with onnxruntime 1.32 on x86:
6 and 3 (mean 0.87). The file run with optimizations off (QuantizeLinear/DequantizeLinear
around float ops) gives the same outputs, so the integer kernels add nothing (the test allows
one step between the two); the distance to the module is INT8's own: int32 biases rounded to
the input-times-kernel step move values across rounding boundaries, and this model's depth
and squeeze-excitation products amplify a one-level difference (features.2 is 6 steps off
already; the same model with ``randomize_``'s batch norms and no 16-bit values is 2 steps
off). FAKELY_QUANT with optimizations off equals the module exactly.
"""

from __future__ import annotations

import collections
import logging
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("jq_torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from _export_models import CNN  # noqa: E402

import jq.core  # noqa: E402
import jq.exporter  # noqa: E402
import jq.ptq  # noqa: E402

QUIET = jq.core.CoreConfig(progress=False)
FMT = jq.exporter.QuantizationFormat
MAX_STEPS, P99_STEPS = 8, 4  # INT8 file against the module; see the module docstring


def _quantize(model, shape, n=2):
    g = torch.Generator().manual_seed(1)
    batches = [torch.rand(*shape, generator=g) for _ in range(n)]

    def data():
        return ([b] for b in batches)

    qmodel, _ = jq.ptq.pytorch_post_training_quantization(model, data, core_config=QUIET)
    return qmodel, data


def _informative_batch_norms(model):
    """Random batch-norm statistics and affine params, as ``randomize_`` in
    ``tests/torch/_helpers.py`` but with scales in [1.5, 3.5]. With init's unit statistics,
    mobilenet_v3_small's outputs are about 1e-10 and all quantize to 0 (a vacuous
    comparison); with ``randomize_``'s scales no Hardswish gets shift-negative correction;
    with these, outputs are O(0.1) and eight Hardswish outputs are 16-bit."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(1.5 + 2 * torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
    return model


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(weights=None).eval()
    return _quantize(_informative_batch_norms(model), (2, 3, 64, 64))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return _quantize(CNN().eval(), (4, 1, 8, 8))


def _export(qmodel, data, path, caplog, **kw):
    """The file's ``ai.onnx`` opset and the ``jq.exporter`` log lines of the call."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="jq.exporter"):
        jq.exporter.pytorch_export_model(qmodel, path, data, **kw)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return opset, [r.getMessage() for r in caplog.records if r.name == "jq.exporter"]


def _zero_point_types(model) -> collections.Counter:
    inits = {i.name: i for i in model.graph.initializer}
    types: collections.Counter = collections.Counter()
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits:
            types[onnx.helper.tensor_dtype_to_np_dtype(inits[n.input[2]].data_type).name] += 1
    return types


def _session(path, level, optimized=None):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    if optimized:
        so.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _run(session, x):
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def test_int8_mobilenet_v3_gets_opset_21_and_runs_integer_kernels(mobilenet, tmp_path, caplog):
    qmodel, data = mobilenet
    assert 16 in {q.n_bits for q in qmodel.quant_layers}  # SNC's Hardswish values
    path = tmp_path / "int8.onnx"
    opset, logged = _export(qmodel, data, path, caplog, quantization_format=FMT.INT8)
    assert opset == 21
    assert logged == [
        "pytorch_export_model: writing ONNX opset 21 (the lowest for INT8 with [16]-bit "
        "values: int16 QuantizeLinear/DequantizeLinear)"
    ]
    levels = ort.GraphOptimizationLevel
    optimized = tmp_path / "int8.opt.onnx"
    fused = _session(path, levels.ORT_ENABLE_EXTENDED, optimized)
    kernels = collections.Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    assert kernels["QLinearConv"] >= 20 and kernels["QGemm"] == 2, kernels
    assert _zero_point_types(onnx.load(str(optimized)))["int16"] > 0  # 16-bit Q/DQ kept
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    got = _run(fused, x)
    step = float(qmodel.node_params(qmodel.graph.outputs[0])["scale"])
    reference = _run(_session(path, levels.ORT_DISABLE_ALL), x)  # Q/DQ around float ops
    assert np.max(np.abs(got - reference)) <= step * (1 + 1e-6)
    with torch.no_grad():
        want = qmodel(x).numpy()
    assert len(np.unique(want)) > 50  # not a vacuous (constant) output
    off = np.abs(got - want) / step
    assert off.max() <= MAX_STEPS and np.quantile(off, 0.99) <= P99_STEPS


def test_a_pinned_opset_too_old_is_still_an_error(mobilenet, tmp_path):
    qmodel, data = mobilenet
    path = tmp_path / "int8.onnx"
    with pytest.raises(ValueError, match=r"opset_version 20 is too old .* or leave it out"):
        jq.exporter.pytorch_export_model(
            qmodel, path, data, quantization_format=FMT.INT8, onnx_opset_version=20
        )
    assert os.listdir(tmp_path) == []  # nothing written
    with pytest.raises(TypeError, match="must be an int or None"):
        jq.exporter.pytorch_export_model(qmodel, path, data, onnx_opset_version="21")


@pytest.mark.parametrize("fmt", [FMT.INT8, FMT.FAKELY_QUANT, FMT.MCTQ])
def test_opset_stays_mcts_default_where_nothing_needs_more(cnn, fmt, tmp_path, caplog):
    qmodel, data = cnn
    assert max(q.n_bits for q in qmodel.quant_layers) == 8
    opset, logged = _export(qmodel, data, tmp_path / "m.onnx", caplog, quantization_format=fmt)
    assert opset == 20
    assert logged == [
        "pytorch_export_model: writing ONNX opset 20 (MCT's default; nothing in the file "
        "needs a newer one)"
    ]


def test_fakely_quant_with_16_bit_values_needs_no_newer_opset(mobilenet, tmp_path, caplog):
    """Below opset 21, FAKELY_QUANT writes 16-bit grids with float ops: 20 holds it, and the
    file equals the module exactly (optimizations off)."""
    qmodel, data = mobilenet
    path = tmp_path / "fq.onnx"
    opset, _ = _export(qmodel, data, path, caplog, quantization_format=FMT.FAKELY_QUANT)
    assert opset == 20
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        want = qmodel(x).numpy()
    got = _run(_session(path, ort.GraphOptimizationLevel.ORT_DISABLE_ALL), x)
    np.testing.assert_array_equal(got, want)


def test_a_pinned_opset_is_written_and_not_logged(cnn, tmp_path, caplog):
    qmodel, data = cnn
    opset, logged = _export(
        qmodel, data, tmp_path / "m.onnx", caplog, quantization_format=FMT.INT8,
        onnx_opset_version=21,
    )  # fmt: skip
    assert (opset, logged) == (21, [])


def test_the_default_mctq_file_names_what_runs_it(cnn, tmp_path):
    """MCTQ (the default format) needs mct_quantizers' custom ops in onnxruntime: without them
    onnxruntime's error names only the op, so the file's doc_string names the packages (the
    ``onnx`` extra installs them), and with them the file runs."""
    qmodel, data = cnn
    path = tmp_path / "m.onnx"
    jq.exporter.pytorch_export_model(qmodel, path, data)  # MCTQ, as in MCT
    doc = onnx.load(str(path)).doc_string
    assert "mct-quantizers" in doc and "onnxruntime-extensions" in doc
    assert "mct_quantizers.get_ort_session_options()" in doc
    with pytest.raises(Exception, match="mct_quantizers:Activation.*not a registered"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    mctq = pytest.importorskip("mct_quantizers")
    pytest.importorskip("onnxruntime_extensions")
    session = ort.InferenceSession(
        str(path), mctq.get_ort_session_options(), providers=["CPUExecutionProvider"]
    )
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = qmodel(x).numpy()
    np.testing.assert_array_equal(
        session.run(None, {session.get_inputs()[0].name: x.numpy()})[0], want
    )


def test_the_onnx_extra_installs_what_mctq_files_need():
    tomllib = pytest.importorskip("tomllib")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        extra = tomllib.load(f)["project"]["optional-dependencies"]["onnx"]
    names = {r.split(">")[0].split("=")[0].split("<")[0].strip() for r in extra}
    assert {"onnx", "onnxruntime", "mct-quantizers", "onnxruntime-extensions"} <= names
