"""jq_torch: PyTorch models into jq's graph form, and jq graphs back into PyTorch modules.

- ``from_torch(model, example_inputs) -> (graph, params)``: convert with ``torch.export``.
- ``to_torch(graph, params) -> torch.nn.Module``: run a jq graph (e.g. a quantized one) with
  torch ops.
- ``pytorch_post_training_quantization``: MCT's PTQ call on a torch model (it is
  ``jq.ptq.pytorch_post_training_quantization``, which checks the call and runs ``_ptq``).
- ``register_converter`` (ATen op -> jq nodes) and ``register_torch_op`` (jq op -> torch) extend
  the two op tables.

torch is imported here and only here; ``import jq`` never imports it.
"""

from jq.ptq import pytorch_post_training_quantization as pytorch_post_training_quantization

from . import (
    _aten,  # noqa: F401  (fills the converter table)
    _aten_gather,  # noqa: F401  (sort, topk, gather / scatter, padding modes: core ATen)
    _aten_index,  # noqa: F401  (masks, indexing, windows, upsampling)
    _aten_math,  # noqa: F401  (elementwise math, activations, reductions: core ATen)
    _index_twins,  # noqa: F401  (torch twins of where, index, roll, resize, arange)
    _lax_ops,  # noqa: F401  (torch twins of the ops jq.from_jax emits)
)
from ._compressed_tensors import save_compressed_tensors as save_compressed_tensors
from ._convert import ConvertContext as ConvertContext
from ._convert import Unconvertible as Unconvertible
from ._convert import from_torch as from_torch
from ._convert import is_module as is_module
from ._convert import register_converter as register_converter
from ._errors import DynamicControlFlowError as DynamicControlFlowError
from ._errors import ExportError as ExportError
from ._errors import Unsupported as Unsupported
from ._errors import UnsupportedOpError as UnsupportedOpError
from ._streamed import StreamedResult as StreamedResult
from ._streamed import quantize_weights_streamed as quantize_weights_streamed
from ._to_torch import JQModule as JQModule
from ._to_torch import register_torch_op as register_torch_op
from ._to_torch import to_torch as to_torch

__all__ = [
    "ConvertContext",
    "DynamicControlFlowError",
    "ExportError",
    "JQModule",
    "StreamedResult",
    "Unconvertible",
    "Unsupported",
    "UnsupportedOpError",
    "from_torch",
    "pytorch_post_training_quantization",
    "quantize_weights_streamed",
    "register_converter",
    "register_torch_op",
    "save_compressed_tensors",
    "to_torch",
]
