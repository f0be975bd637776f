"""``pytorch_export_model``: MCT's exporter call on a jq-quantized torch module.

The formats are checked here; the ``jq_torch`` adapter, found by name when called
(``front_door.adapter``), checks the module, reads its params and the example batch as NumPy
arrays, and writes TorchScript itself or ONNX with :func:`jq._src.export.onnx_file.write_onnx`.
No torch code here, and ``import jq`` never imports torch or onnx.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ..ptq.front_door import adapter
from .formats import PytorchExportSerializationFormat, QuantizationFormat, parse_format
from .onnx_file import DEFAULT_ONNX_OPSET_VERSION as DEFAULT_ONNX_OPSET_VERSION

_FN = "pytorch_export_model"
_SUPPORTED = {
    PytorchExportSerializationFormat.ONNX: (
        QuantizationFormat.FAKELY_QUANT,
        QuantizationFormat.INT8,
        QuantizationFormat.MCTQ,
    ),
    PytorchExportSerializationFormat.TORCHSCRIPT: (QuantizationFormat.FAKELY_QUANT,),
}


def pytorch_export_model(
    model: Any,
    save_model_path: str | os.PathLike,
    repr_dataset: Callable[[], Any],
    *,
    serialization_format: Any = PytorchExportSerializationFormat.ONNX,
    quantization_format: Any = QuantizationFormat.MCTQ,
    onnx_opset_version: int | None = None,
    output_names: Sequence[str] | None = None,
) -> None:
    """Write a jq-quantized torch module to a file, with MCT's call
    (``mct.exporter.pytorch_export_model``).

    Args:
      model: the module ``jq.ptq.pytorch_post_training_quantization`` returned.
      save_model_path: the file to write (replaced whole, or left untouched on error).
      repr_dataset: MCT's representative dataset callable; its first batch gives the input
        dtypes and the example ONNX and TorchScript trace with.
      serialization_format: :class:`PytorchExportSerializationFormat` (or MCT's member, or
        a name): ``ONNX`` or ``TORCHSCRIPT``.
      quantization_format: :class:`QuantizationFormat` (or MCT's, or a name): ``MCTQ``
        (MCT's default: ``mct_quantizers`` custom ops, see ``jq._src.export.onnx_mctq``;
        onnxruntime runs them with ``mct_quantizers.get_ort_session_options()``, which needs
        the packages ``mct-quantizers`` and ``onnxruntime-extensions``: ``pip install
        'jq-quant[onnx]'``), ``FAKELY_QUANT`` (Q/DQ) or ``INT8`` (ONNX, jq only); TorchScript:
        ``FAKELY_QUANT``. (torch deprecates TorchScript; jq writes it without torch's
        three ``FutureWarning`` notices, as the format was asked for. ONNX is maintained.)
      onnx_opset_version: ``ai.onnx`` opset (>= 13; >= 21 for INT8 with 16-bit values). Left
        out (``None``; MCT's default is 20), the lowest opset the file needs, at least 20: 21
        for INT8 with values wider than 8 bits (jq's shift-negative correction puts some at
        16), else 20. The choice is logged (INFO) on the ``jq.exporter`` logger.
      output_names: ONNX output names (default ``output`` / ``output_<i>``).

    Raises:
      TypeError: ``model`` is not a jq-quantized module; arguments of the wrong type.
      ValueError: an unknown format (the valid ones listed), a combination not supported, an
        unwritable path, a pinned opset too old for the bit widths.
      NotImplementedError: graph ops without an ONNX form (all listed).
      ImportError: torch or the ``jq_torch`` adapter is not importable.
    """
    ser = parse_format(
        serialization_format, PytorchExportSerializationFormat, _FN, "serialization_format"
    )
    fmt = parse_format(quantization_format, QuantizationFormat, _FN, "quantization_format")
    if fmt not in _SUPPORTED[ser]:
        valid = ", ".join(f.name for f in _SUPPORTED[ser])
        raise ValueError(f"{_FN}: {ser.name} supports quantization_format {valid}, not {fmt.name}")
    writer = adapter("pytorch", "_exporter", _FN)
    torchscript = ser is PytorchExportSerializationFormat.TORCHSCRIPT
    writer.export_module(
        model,
        save_model_path,
        repr_dataset,
        fmt=None if torchscript else fmt,
        opset=onnx_opset_version,
        output_names=output_names,
        fn=_FN,
    )
