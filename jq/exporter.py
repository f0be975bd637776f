"""MCT-style export: ``jq.exporter`` mirrors ``mct.exporter``.

``pytorch_export_model(model, save_model_path, repr_dataset, *, serialization_format=...,
quantization_format=..., onnx_opset_version=..., output_names=None)`` writes the module
``jq.ptq.pytorch_post_training_quantization`` returned as ONNX (FAKELY_QUANT, INT8 or MCTQ)
or TorchScript (FAKELY_QUANT). torch and onnx are imported only when it is called.
"""

from ._src.export.formats import (
    PytorchExportSerializationFormat as PytorchExportSerializationFormat,
)
from ._src.export.formats import QuantizationFormat as QuantizationFormat
from ._src.export.scales import OnnxGrid as OnnxGrid
from ._src.export.scales import grid_from_levels as grid_from_levels
from ._src.export.scales import scale_zero_point as scale_zero_point
from ._src.export.torch_export import pytorch_export_model as pytorch_export_model

__all__ = [
    "OnnxGrid",
    "PytorchExportSerializationFormat",
    "QuantizationFormat",
    "grid_from_levels",
    "pytorch_export_model",
    "scale_zero_point",
]
