"""``pytorch_export_model``: MCT's exporter call on a jq-quantized torch module.

torch and onnx are imported inside the functions (``import jq`` never imports them).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .files import atomic_path, check_writable
from .formats import PytorchExportSerializationFormat, QuantizationFormat, parse_format
from .onnx_builder import OnnxOptions
from .onnx_model import KERNEL_OPS, MIN_16_BIT_OPSET, MIN_QDQ_OPSET, to_onnx, unsupported_ops

_FN = "pytorch_export_model"
# MCT 2.6.1's default with torch >= 2.4; jq writes it unless the file needs a newer one.
DEFAULT_ONNX_OPSET_VERSION = 20
_LOG = logging.getLogger("jq.exporter")
_SUPPORTED = {
    PytorchExportSerializationFormat.ONNX: (
        QuantizationFormat.FAKELY_QUANT,
        QuantizationFormat.INT8,
        QuantizationFormat.MCTQ,
    ),
    PytorchExportSerializationFormat.TORCHSCRIPT: (QuantizationFormat.FAKELY_QUANT,),
}
_MODES = {
    QuantizationFormat.FAKELY_QUANT: "fake_quant",
    QuantizationFormat.INT8: "int8",
    QuantizationFormat.MCTQ: "mctq",
}


def _check_model(model: Any) -> Any:
    """The model, if it is a jq-quantized module (``jq_torch.JQModule`` with quantizers)."""
    try:
        from jq_torch import JQModule
    except ImportError as e:
        raise ImportError(f"{_FN} needs torch and the jq_torch adapter: {e}") from e
    if not isinstance(model, JQModule):
        raise TypeError(
            f"{_FN}: model must be the module jq.ptq.pytorch_post_training_quantization "
            f"returned (a jq_torch.JQModule), got {type(model).__module__}."
            f"{type(model).__name__}"
        )
    # A weights-only module (TargetPlatform(quantize_activations=False)) has quantized
    # kernels in its records but no fake_quant node.
    has_kernels = any(q.kind == "weights" for q in model.quant_layers)
    if not model.quant_layers or not (
        has_kernels or any(n.op == "fake_quant" for n in model.graph.nodes)
    ):
        raise TypeError(f"{_FN}: model is a float jq module (no quantizers); quantize it first")
    return model


def first_batch(repr_dataset: Callable[[], Any], n_inputs: int) -> list[np.ndarray]:
    """The first batch of ``repr_dataset`` as NumPy arrays (floats as float32)."""
    if not callable(repr_dataset):
        raise TypeError(f"{_FN}: repr_dataset must be a callable returning batches")
    try:
        batch = next(iter(repr_dataset()))
    except StopIteration:
        raise ValueError(f"{_FN}: repr_dataset yielded no batch") from None
    items = list(batch) if isinstance(batch, (list, tuple)) else [batch]
    if len(items) != n_inputs:
        raise ValueError(f"{_FN}: a batch has {len(items)} inputs; the model takes {n_inputs}")
    out = []
    for x in items:
        a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        out.append(a.astype(np.float32) if a.dtype.kind == "f" else a)
    return out


def _wide_bits(model: Any) -> list[int]:
    """The bit widths above 8 of the module's quantizers, sorted."""
    return sorted({q.n_bits for q in model.quant_layers if q.n_bits > 8})


def needed_opset(model: Any, fmt: QuantizationFormat) -> tuple[int, str]:
    """The lowest ``ai.onnx`` opset, not below MCT's default, that the ``fmt`` file of
    ``model`` needs, and why.

    INT8 writes values wider than 8 bits as int16 QuantizeLinear/DequantizeLinear, which need
    opset 21. The other formats need no more than the default: FAKELY_QUANT writes wide grids
    with float ops below opset 21, and MCTQ's custom ops take any bit width.
    """
    wide = _wide_bits(model)
    if fmt is QuantizationFormat.INT8 and wide:
        return max(DEFAULT_ONNX_OPSET_VERSION, MIN_16_BIT_OPSET), (
            f"the lowest for INT8 with {wide}-bit values: int16 QuantizeLinear/DequantizeLinear"
        )
    return DEFAULT_ONNX_OPSET_VERSION, "MCT's default; nothing in the file needs a newer one"


def _check_opset(model: Any, fmt: QuantizationFormat, opset: Any) -> int:
    """The opset to write: ``opset`` once checked, or for ``None`` the lowest one the file
    needs (:func:`needed_opset`), said on the ``jq.exporter`` logger."""
    if opset is None:
        opset, why = needed_opset(model, fmt)
        _LOG.info("%s: writing ONNX opset %d (%s)", _FN, opset, why)
    elif isinstance(opset, bool) or not isinstance(opset, int):
        raise TypeError(f"{_FN}: onnx_opset_version must be an int or None, got {opset!r}")
    if opset < MIN_QDQ_OPSET:
        raise ValueError(
            f"{_FN}: onnx_opset_version {opset} is too old: per-channel QuantizeLinear/"
            f"DequantizeLinear need opset {MIN_QDQ_OPSET} or newer"
        )
    wide = _wide_bits(model)
    if fmt is QuantizationFormat.INT8 and wide and opset < MIN_16_BIT_OPSET:
        raise ValueError(
            f"{_FN}: onnx_opset_version {opset} is too old for INT8 with {wide}-bit values "
            f"(int16 QuantizeLinear/DequantizeLinear need opset {MIN_16_BIT_OPSET}); pass "
            f"onnx_opset_version={MIN_16_BIT_OPSET}, or leave it out (the exporter then picks "
            "the lowest opset the file needs), or use FAKELY_QUANT (float ops for them)"
        )
    kernels = {n.name for n in model.graph.nodes if n.op in KERNEL_OPS}
    wide_w = [q.name for q in model.quant_layers if q.kind == "weights" and q.n_bits > 8]
    if fmt is QuantizationFormat.INT8 and set(wide_w) & kernels:
        raise ValueError(f"{_FN}: INT8 needs kernels of at most 8 bits; {wide_w} are wider")
    return opset


def _module_params(model: Any) -> dict[str, dict[str, np.ndarray]]:
    return {
        n.name: {p: t.detach().cpu().numpy() for p, t in model.node_params(n.name).items()}
        for n in model.graph.nodes
        if model.node_params(n.name)
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
    """
    ser = parse_format(
        serialization_format, PytorchExportSerializationFormat, _FN, "serialization_format"
    )
    fmt = parse_format(quantization_format, QuantizationFormat, _FN, "quantization_format")
    if fmt not in _SUPPORTED[ser]:
        valid = ", ".join(f.name for f in _SUPPORTED[ser])
        raise ValueError(f"{_FN}: {ser.name} supports quantization_format {valid}, not {fmt.name}")
    model = _check_model(model)
    path = check_writable(save_model_path, _FN)
    example = first_batch(repr_dataset, len(model.graph.inputs))
    if ser is PytorchExportSerializationFormat.TORCHSCRIPT:
        return _write_torchscript(model, path, example)
    opset = _check_opset(model, fmt, onnx_opset_version)
    missing = unsupported_ops(model.graph)
    if missing:
        raise NotImplementedError(f"{_FN}: no ONNX form for {len(missing)} node(s): {missing}")
    mode = _MODES[fmt]
    options = OnnxOptions(mode=mode, opset=opset)
    proto = to_onnx(
        model.graph, _module_params(model), model.quant_layers, example, options, output_names
    )
    import onnx

    with atomic_path(path) as tmp:
        onnx.save_model(proto, tmp)


def _write_torchscript(model: Any, path: str, example: list[np.ndarray]) -> None:
    """The module's TorchScript trace, written whole or not at all (the tracing is the
    module's own, so this package never imports torch).

    torch deprecates TorchScript (2.14 does): ``torch.jit.trace``, ``trace_method`` and
    ``save`` each warn (``FutureWarning``) on every call, and no other API writes the format.
    The user who asks for ``TORCHSCRIPT`` has chosen it, so those three notices are silenced
    here, by their text, for this call only (``pytorch_export_model``'s docstring says that
    torch deprecates the format).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", r"`torch\.jit\.\w+` is deprecated", category=FutureWarning
        )
        with atomic_path(path) as tmp:
            model.save_torchscript(tmp, example)
