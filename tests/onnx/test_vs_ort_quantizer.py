"""jq's INT8 ONNX against ONNX Runtime's own ``quantize_static`` on the same file and data.

Measured (CPU, onnxruntime 1.32, torchvision random init with trained-looking batch-norm
statistics, 1x3x64x64 inputs, 4 calibration batches of 4 normal images, SQNR of the output on
8 other images; jq with a uniform activation grid, as ORT's int8 QDQ, and MSE thresholds):

=============  ==================  ======================  ====================
model          jq uniform + MSE    jq power-of-two + MSE   ORT MinMax / Entropy
=============  ==================  ======================  ====================
resnet18       33.0 dB             31.5 dB                 31.4 / 31.4 dB
mobilenet_v2   39.6 dB             34.2 dB                 36.3 / 36.3 dB
=============  ==================  ======================  ====================

(Power-of-two is MCT's default activation grid: its thresholds round up to a power of two,
which costs up to a bit of resolution against ORT's free scales.)
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from _onnx_models import run_ort  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from test_quantize_static import Reader, optimized_ops, sqnr_db  # noqa: E402
from test_torch_models import export, randomize_bn  # noqa: E402

import jq.core  # noqa: E402
import jq_onnx  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_jq_int8_at_least_ort_minmax_and_entropy(tmp_path, name):
    torch.manual_seed(0)
    model = randomize_bn(getattr(torchvision.models, name)(weights=None))
    path = export(model, torch.randn(1, 3, 64, 64), tmp_path / f"{name}.onnx")
    rng = np.random.default_rng(0)
    cal = [rng.standard_normal((4, 3, 64, 64)).astype(np.float32) for _ in range(4)]
    test = rng.standard_normal((8, 3, 64, 64)).astype(np.float32)
    ref = run_ort(path, test)[0]

    ours = tmp_path / "jq.onnx"
    jq_onnx.quantize_static(
        path,
        ours,
        Reader("input", cal),
        calibrate_method="mse",
        core_config=jq.core.CoreConfig(progress=False),
        target_platform=jq.core.TargetPlatform(activation_quantization_method="uniform"),
    )
    assert "QLinearConv" in optimized_ops(ours, tmp_path)
    jq_db = sqnr_db(ref, run_ort(str(ours), test)[0])
    for method in (CalibrationMethod.MinMax, CalibrationMethod.Entropy):
        theirs = tmp_path / f"ort_{method.name}.onnx"
        quantize_static(
            path,
            str(theirs),
            Reader("input", cal),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
        )
        ort_db = sqnr_db(ref, run_ort(str(theirs), test)[0])
        assert jq_db >= ort_db, (name, method.name, jq_db, ort_db)
