"""jq_onnx: ONNX models into jq's graph form, and ONNX Runtime's ``quantize_static`` call.

- ``from_onnx(model) -> (graph, params)``: an ONNX file or ``ModelProto`` (opset 13+) as a jq
  graph; weights from initializers and ``Constant`` nodes, shape subgraphs folded, a dynamic
  batch axis kept.
- ``quantize_static(model_input, model_output, calibration_data_reader, ...)``: ONNX in,
  quantized ONNX out (INT8, FAKELY_QUANT or MCTQ), with jq's PTQ and ORT's call shape.
- ``register_converter`` extends the op table (ONNX op type -> jq nodes).

onnx is imported here (and onnxruntime only for ORT's enums, when given); torch never is.
"""

from . import _ops, _ops_shape  # noqa: F401  (fill the converter table)
from ._convert import TRACE_BATCH as TRACE_BATCH
from ._convert import from_onnx as from_onnx
from ._errors import Unconvertible as Unconvertible
from ._errors import Unsupported as Unsupported
from ._errors import UnsupportedOpError as UnsupportedOpError
from ._quantize import error_method as error_method
from ._quantize import quantize_static as quantize_static
from ._table import register_converter as register_converter

__all__ = [
    "TRACE_BATCH",
    "Unconvertible",
    "Unsupported",
    "UnsupportedOpError",
    "error_method",
    "from_onnx",
    "quantize_static",
    "register_converter",
]
