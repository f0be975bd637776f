"""``quantize_static``: ONNX Runtime's PTQ call, with jq's threshold selection.

ONNX in, quantized ONNX out, without torch: the model is read with :func:`from_onnx`, the
calibration batches come from an ORT ``CalibrationDataReader``, ``jq.ptq.quantize_graph``
chooses the thresholds, and jq's ONNX writer (the one ``jq.exporter`` uses) writes the result
as INT8 (int8 weights and Q/DQ activations, which ORT runs with integer kernels such as
QLinearConv), FAKELY_QUANT or MCTQ.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

import jq.core
import jq.ptq
from jq._src.export.files import atomic_path, check_writable
from jq._src.export.formats import QuantizationFormat, parse_format
from jq._src.export.onnx_builder import OnnxOptions
from jq._src.export.onnx_model import MIN_16_BIT_OPSET, MIN_QDQ_OPSET, to_onnx, unsupported_ops
from jq._src.export.torch_export import DEFAULT_ONNX_OPSET_VERSION

from ._convert import from_onnx, load_model

_FN = "jq_onnx.quantize_static"
_MODES = {
    QuantizationFormat.FAKELY_QUANT: "fake_quant",
    QuantizationFormat.INT8: "int8",
    QuantizationFormat.MCTQ: "mctq",
}
# ORT's calibration methods that have a jq twin: MinMax is jq's NOCLIPPING (the threshold is
# the largest magnitude seen), Entropy is KL (the histogram divergence, TensorRT's method).
_ORT_METHODS = {"minmax": "noclipping", "entropy": "kl"}


def error_method(value: Any, fn: str = _FN) -> str:
    """The jq error-method name of ``calibrate_method``: a jq name or member
    (``"mse"``, ``jq.core.QuantizationErrorMethod.KL``, ``"auto"``), or ORT's
    ``CalibrationMethod.MinMax`` / ``Entropy`` (or their names).

    Raises:
      ValueError: ORT's ``Percentile`` / ``Distribution``, or an unknown name.
      TypeError: neither a string nor an enum member.
    """
    if isinstance(value, enum.Enum):
        name = value.name if type(value).__name__ == "CalibrationMethod" else str(value.value)
    elif isinstance(value, str):
        name = value
    else:
        raise TypeError(
            f"{fn}: calibrate_method must be a jq error method or ORT CalibrationMethod, "
            f"got {type(value).__name__} {value!r}"
        )
    key = name.strip().lower()
    if key in ("percentile", "distribution"):
        raise ValueError(
            f"{fn}: calibrate_method {name!r} is ORT's own; jq offers 'minmax' (= 'noclipping'), "
            "'entropy' (= 'kl'), 'mse', 'mae', 'lp', 'hmse' and 'auto'"
        )
    return _ORT_METHODS.get(key, key)


def read_batches(reader: Any, inputs: tuple[str, ...], fn: str = _FN) -> list[list[np.ndarray]]:
    """Every batch of an ORT ``CalibrationDataReader`` (``get_next()`` until ``None``), as
    one list of arrays per batch in the model's input order."""
    if not callable(getattr(reader, "get_next", None)):
        raise TypeError(
            f"{fn}: calibration_data_reader must have get_next() (an ORT "
            f"CalibrationDataReader), got {type(reader).__name__}"
        )
    batches = []
    while (item := reader.get_next()) is not None:
        if not isinstance(item, Mapping) or set(item) != set(inputs):
            got = sorted(item) if isinstance(item, Mapping) else type(item).__name__
            raise ValueError(
                f"{fn}: get_next() must return {{input name: array}} for the inputs "
                f"{list(inputs)}, got {got}"
            )
        batches.append([np.asarray(item[name]) for name in inputs])
    if not batches:
        raise ValueError(f"{fn}: calibration_data_reader gave no batch")
    return batches


def _core_config(core_config: jq.core.CoreConfig | None, method: Any) -> jq.core.CoreConfig:
    cfg = jq.core.CoreConfig() if core_config is None else core_config
    if not isinstance(cfg, jq.core.CoreConfig):
        raise TypeError(
            f"{_FN}: core_config must be a jq.core.CoreConfig, got {type(cfg).__name__}"
        )
    if method is None:
        return cfg
    qc = cfg.quantization_config
    try:
        # QuantizationConfig parses a method name (its __post_init__), as for MCT's strings.
        qc = dataclasses.replace(qc, activation_error_method=error_method(method))  # type: ignore[arg-type]
    except ValueError as e:
        raise ValueError(f"{_FN}: calibrate_method: {e}") from None
    return dataclasses.replace(cfg, quantization_config=qc)


def _opset(layers, fmt: QuantizationFormat, opset: int | None) -> int:
    wide = sorted({q.n_bits for q in layers if q.n_bits > 8})
    need = MIN_16_BIT_OPSET if fmt is QuantizationFormat.INT8 and wide else MIN_QDQ_OPSET
    if opset is None:
        return max(DEFAULT_ONNX_OPSET_VERSION, need)
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < need:
        raise ValueError(
            f"{_FN}: opset_version must be an int >= {need} for this file "
            f"({fmt.name}{f' with {wide}-bit values' if wide else ''}), got {opset!r}"
        )
    return opset


def quantize_static(
    model_input: Any,
    model_output: str | os.PathLike,
    calibration_data_reader: Any,
    *,
    calibrate_method: Any = None,
    quant_format: Any = QuantizationFormat.INT8,
    core_config: jq.core.CoreConfig | None = None,
    target_platform: jq.core.TargetPlatform | None = None,
    opset_version: int | None = None,
) -> jq.core.QuantizationInfo:
    """Quantize an ONNX model after training and write the quantized ONNX model, with
    ONNX Runtime's call (``onnxruntime.quantization.quantize_static``) and jq's thresholds.

    Args:
      model_input: the float model: a path or an ``onnx.ModelProto`` (opset 13+).
      model_output: the file to write (replaced whole, or left untouched on error).
      calibration_data_reader: ORT's ``CalibrationDataReader`` (or anything with
        ``get_next()`` returning ``{input name: array}``, then ``None``); read once, whole.
      calibrate_method: how activation thresholds are chosen: a jq error method
        (``"mse"``, ``"mae"``, ``"kl"``, ``"lp"``, ``"hmse"``, ``"noclipping"``, ``"auto"``, or a
        ``jq.core.QuantizationErrorMethod``), or ORT's ``CalibrationMethod.MinMax`` (=
        ``"noclipping"``) / ``Entropy`` (= ``"kl"``). Default: ``core_config``'s (MSE).
      quant_format: ``"INT8"`` (int8 weights with per-channel DequantizeLinear, Q/DQ
        activations; ORT fuses them into QLinearConv / QGemm...), ``"FAKELY_QUANT"`` (float
        weights on their grid, Q/DQ activations) or ``"MCTQ"`` (``mct_quantizers`` ops), or a
        ``jq.exporter.QuantizationFormat``; ORT's ``QuantFormat.QDQ`` means INT8.
      core_config, target_platform: jq's PTQ settings (:func:`jq.ptq.quantize_graph`).
      opset_version: ``ai.onnx`` opset of the output (default 20; 21 for INT8 with values
        wider than 8 bits).

    Returns:
      The :class:`jq.core.QuantizationInfo` of the run (ORT's returns nothing).

    Raises:
      TypeError / ValueError: bad arguments (named), batches that do not match the inputs.
      UnsupportedOpError: ONNX nodes jq cannot convert (all listed).
      NotImplementedError: quantized-graph ops the ONNX writer cannot write (all listed).

    Example (see ``tests/onnx/test_quantize_static.py``)::

        info = jq_onnx.quantize_static("model.onnx", "model.int8.onnx", reader,
                                       calibrate_method="mse", quant_format="INT8")
    """
    if type(quant_format).__name__ == "QuantFormat":  # ORT's enum: QDQ is jq's INT8 layout
        if quant_format.name != "QDQ":
            raise ValueError(f"{_FN}: quant_format {quant_format.name} (jq writes QDQ: INT8)")
        quant_format = QuantizationFormat.INT8
    fmt = parse_format(quant_format, QuantizationFormat, _FN, "quant_format")
    path = check_writable(model_output, _FN)
    cfg = _core_config(core_config, calibrate_method)
    proto = load_model(model_input, _FN)
    weights = {t.name for t in proto.graph.initializer}
    inputs = tuple(i.name for i in proto.graph.input if i.name not in weights)
    batches = read_batches(calibration_data_reader, inputs)
    # Traced at the first batch's shapes: dynamic axes other than the batch take its sizes.
    graph, params = from_onnx(proto, input_shapes=[b.shape for b in batches[0]])
    batches = [[b.astype(np.float32) if b.dtype.kind == "f" else b for b in x] for x in batches]
    res = jq.ptq.quantize_graph(
        graph,
        params,
        lambda: iter(batches),
        core_config=cfg,
        target_platform=target_platform,
        fn=_FN,
    )
    options = OnnxOptions(mode=_MODES[fmt], opset=_opset(res.info.layers, fmt, opset_version))
    missing = unsupported_ops(res.graph, options.opset)
    if missing:
        raise NotImplementedError(f"{_FN}: no ONNX form for {len(missing)} node(s): {missing}")
    names = [o.name for o in proto.graph.output]
    out = to_onnx(res.graph, res.params, res.info.layers, batches[0], options, names)
    import onnx

    with atomic_path(path) as tmp:
        onnx.save_model(out, tmp)
    return res.info
