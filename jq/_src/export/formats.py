"""The export formats, with MCT's names and values (``mct.exporter``'s two enums).

``parse_serialization`` / ``parse_quantization`` accept jq's members, MCT's members (matched by
name, so MCT need not be imported) and names as strings (case-insensitive); anything else is a
``ValueError`` listing the valid names.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

E = TypeVar("E", bound=enum.Enum)


class PytorchExportSerializationFormat(enum.Enum):
    """The file written: ONNX (``.onnx``) or TorchScript (``torch.jit.save``)."""

    TORCHSCRIPT = 0
    ONNX = 1


class QuantizationFormat(enum.Enum):
    """How quantization appears in the file.

    - ``FAKELY_QUANT``: float weights already on their grid; activations as
      ``QuantizeLinear``/``DequantizeLinear`` pairs (MCT's format).
    - ``INT8``: int8 weight initializers with per-channel ``DequantizeLinear``, activations as
      Q/DQ pairs, laid out as onnxruntime's QDQ node units (it fuses them into integer kernels).
      jq only: MCT names it but does not implement it for PyTorch.
    - ``MCTQ``: MCT's ``mct_quantizers`` custom ops, which the IMX500 tool chain reads.
    """

    FAKELY_QUANT = 0
    INT8 = 1
    MCTQ = 2


def parse_format(value: Any, enum_type: type[E], fn: str, what: str) -> E:
    """``value`` as a member of ``enum_type``: a member, a foreign enum member of the same name
    (MCT's), or a name string.

    Raises:
      ValueError: an unknown name (the valid ones listed).
      TypeError: neither an enum member nor a string.
    """
    if isinstance(value, enum_type):
        return value
    if isinstance(value, enum.Enum):
        name = value.name
    elif isinstance(value, str):
        name = value.strip().upper()
    else:
        raise TypeError(
            f"{fn}: {what} must be a {enum_type.__name__} member or a name, got "
            f"{type(value).__name__} {value!r}"
        )
    try:
        return enum_type[name]
    except KeyError:
        valid = ", ".join(m.name for m in enum_type)
        raise ValueError(f"{fn}: unknown {what} {value!r}; valid: {valid}") from None
