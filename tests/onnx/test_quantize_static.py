"""``jq_onnx.quantize_static``: ONNX in, quantized ONNX out, run by onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from _onnx_models import init, model, run_ort, small_cnn  # noqa: E402
from onnx import helper  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
)

import jq.core  # noqa: E402
import jq_onnx  # noqa: E402

CFG = jq.core.CoreConfig(progress=False)


class Reader(CalibrationDataReader):
    """ORT's reader protocol over a list of batches."""

    def __init__(self, name, batches):
        self.name, self.batches = name, list(batches)
        self.it = iter(self.batches)

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {self.name: x}

    def rewind(self):
        self.it = iter(self.batches)


def sqnr_db(ref, y):
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - y) ** 2)))


def optimized_ops(path, tmp_path):
    """The op types of the graph onnxruntime runs (after its QDQ fusions)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node}


@pytest.fixture
def cnn(tmp_path, rng):
    path = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(rng), path)
    batches = [rng.standard_normal((8, 3, 16, 16)).astype(np.float32) for _ in range(3)]
    test = rng.standard_normal((5, 3, 16, 16)).astype(np.float32)
    return path, batches, test


def test_int8_file_runs_with_integer_kernels(cnn, tmp_path):
    path, batches, test = cnn
    out = tmp_path / "cnn.int8.onnx"
    info = jq_onnx.quantize_static(path, out, Reader("x", batches), core_config=CFG)
    assert {q.kind for q in info.layers} == {"weights", "activation"}
    ops = optimized_ops(out, tmp_path)
    assert {"QLinearConv", "QGemm"} <= ops, ops  # ORT fused the Q/DQ pairs into int8 kernels
    ref, y = run_ort(str(path), test)[0], run_ort(str(out), test)[0]
    # measured 35.4 dB (8-bit weights per channel and activations, MSE thresholds)
    assert y.shape == ref.shape and sqnr_db(ref, y) > 25


def test_formats_and_ort_arguments(cnn, tmp_path):
    path, batches, test = cnn
    ref = run_ort(str(path), test)[0]
    fq = tmp_path / "fq.onnx"
    jq_onnx.quantize_static(
        onnx.load(path),
        fq,
        Reader("x", batches),
        core_config=CFG,
        calibrate_method=CalibrationMethod.MinMax,
        quant_format="FAKELY_QUANT",
    )
    assert sqnr_db(ref, run_ort(str(fq), test)[0]) > 25  # measured 35.1 dB
    qdq = tmp_path / "qdq.onnx"
    info = jq_onnx.quantize_static(
        path,
        qdq,
        Reader("x", batches),
        core_config=CFG,
        calibrate_method="mae",
        quant_format=QuantFormat.QDQ,
    )
    assert {q.error_method for q in info.layers if q.kind == "activation"} == {"mae"}
    weights = [t for t in onnx.load(qdq).graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights  # INT8: integer kernels in the file
    mctq = tmp_path / "mctq.onnx"
    jq_onnx.quantize_static(path, mctq, Reader("x", batches), core_config=CFG, quant_format="MCTQ")
    assert any(n.domain for n in onnx.load(mctq).graph.node)  # mct_quantizers custom ops


def test_dynamic_sequence_axis_takes_the_batches_size(tmp_path, rng):
    w1 = rng.standard_normal((8, 16)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((16, 4)).astype(np.float32) * 0.3
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g"], ["n"]),
        helper.make_node("MatMul", ["n", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    inits = [
        init("g", np.ones(8, np.float32)),
        init("w1", w1),
        init("w2", w2),
        init("b1", np.full(16, 0.1, np.float32)),
    ]
    m = model(nodes, [("x", ["N", "S", 8])], [("y", ["N", "S", 4])], inits)
    path, out = tmp_path / "seq.onnx", tmp_path / "seq.int8.onnx"
    onnx.save(m, path)
    batches = [rng.standard_normal((4, 6, 8)).astype(np.float32) for _ in range(2)]
    jq_onnx.quantize_static(path, out, Reader("x", batches), core_config=CFG)
    test = rng.standard_normal((3, 6, 8)).astype(np.float32)
    assert sqnr_db(run_ort(m, test)[0], run_ort(str(out), test)[0]) > 25  # measured 35.3 dB


def test_error_methods_map():
    assert jq_onnx.error_method(CalibrationMethod.MinMax) == "noclipping"
    assert jq_onnx.error_method("Entropy") == "kl"
    assert jq_onnx.error_method(jq.core.QuantizationErrorMethod.HMSE) == "hmse"
    assert jq_onnx.error_method("auto") == "auto"
    with pytest.raises(ValueError, match="ORT's own"):
        jq_onnx.error_method(CalibrationMethod.Percentile)


def test_bad_arguments(cnn, tmp_path):
    path, batches, _ = cnn
    out = tmp_path / "out.onnx"
    with pytest.raises(TypeError, match="get_next"):
        jq_onnx.quantize_static(path, out, batches, core_config=CFG)
    with pytest.raises(ValueError, match="inputs \\['x'\\]"):
        jq_onnx.quantize_static(path, out, Reader("image", batches), core_config=CFG)
    with pytest.raises(ValueError, match="gave no batch"):
        jq_onnx.quantize_static(path, out, Reader("x", []), core_config=CFG)
    with pytest.raises(ValueError, match="QOperator"):
        jq_onnx.quantize_static(path, out, Reader("x", batches), quant_format=QuantFormat.QOperator)
    with pytest.raises(ValueError, match="calibrate_method"):
        jq_onnx.quantize_static(path, out, Reader("x", batches), calibrate_method="bogus")
    assert not out.exists()


def test_jq_onnx_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, jq_onnx; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
