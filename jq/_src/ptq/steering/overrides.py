"""Per-node overrides: the :class:`NodeOverride` record, its fields and their parsers.

A ``NodeOverride`` is what one steering rule sets on the nodes it selects (MCT's node-config
attribute names); :func:`node_override` reads jq's ``overrides`` values into one, and
:func:`bit_width` is the one bit-width check of the PTQ configuration (``TargetPlatform``
uses it too).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any

from ...select.enums import (
    AutoErrorMethod,
    ErrorMethod,
    QuantizationMethod,
    is_auto,
    parse_error_method,
    parse_method,
)
from ...select.validate import check_bit_width

WEIGHTS = "weights"
ACTIVATION = "activation"


def parse_error_method_or_auto(value: Any, where: str) -> ErrorMethod | AutoErrorMethod:
    """An error method (see ``parse_error_method``) or ``AutoErrorMethod.AUTO`` for
    ``"auto"``; ``where`` names the field in the error."""
    if is_auto(value):
        return AutoErrorMethod.AUTO
    try:
        return parse_error_method(value, where)
    except ValueError as e:
        raise ValueError(f"{e}, or 'auto' (choose per layer)") from None


def bit_width(value: Any, where: str) -> int:
    """``value`` as a bit width: an int in ``1..MAX_BITS`` (the functional API's range,
    ``select.validate.MAX_BITS``); ``where`` names the field in the error.

    Raises:
      TypeError: not an int (a bool is not); ValueError: out of range.
    """
    return check_bit_width(value, where)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: must be a bool, got {type(value).__name__} {value!r}")
    return value


def _qmethod(value: Any, where: str) -> QuantizationMethod:
    return parse_method(value, where)


# field -> (kind, parser)
_FIELDS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "weights_error_method": (WEIGHTS, parse_error_method_or_auto),
    "weights_n_bits": (WEIGHTS, bit_width),
    "weights_quantization_method": (WEIGHTS, _qmethod),
    "weights_per_channel_threshold": (WEIGHTS, _flag),
    "enable_weights_quantization": (WEIGHTS, _flag),
    "activation_error_method": (ACTIVATION, parse_error_method_or_auto),
    "activation_n_bits": (ACTIVATION, bit_width),
    "activation_quantization_method": (ACTIVATION, _qmethod),
    "enable_activation_quantization": (ACTIVATION, _flag),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeOverride:
    """Settings of one node that replace the global ones; ``None`` keeps the global value.

    Field names are MCT's node-config attribute names (``jq.core.QuantizationConfig`` and
    ``jq.core.TargetPlatform`` hold the global values).

    Args:
      weights_error_method: the kernel's error method (an ``ErrorMethod``, MCT's member, a
        name, or ``"auto"``).
      weights_n_bits: the kernel's bit width (1..16).
      weights_quantization_method: ``POWER_OF_TWO``, ``SYMMETRIC`` or ``UNIFORM``.
      weights_per_channel_threshold: per output channel (True) or per tensor (False).
      enable_weights_quantization: False keeps the kernel in float.
      activation_error_method: the value's error method (``HMSE`` only when it is the global
        one: it weights every value's statistics).
      activation_n_bits, activation_quantization_method: the value's quantizer.
      enable_activation_quantization: False leaves the value without a quantizer.

    Raises:
      TypeError / ValueError: a value of the wrong type (the message names the field).

    Examples:
      >>> NodeOverride(weights_n_bits=4, activation_error_method="kl").set_fields()
      {'weights_n_bits': 4, 'activation_error_method': <ErrorMethod.KL: 'kl'>}
    """

    weights_error_method: ErrorMethod | AutoErrorMethod | None = None
    weights_n_bits: int | None = None
    weights_quantization_method: QuantizationMethod | None = None
    weights_per_channel_threshold: bool | None = None
    enable_weights_quantization: bool | None = None
    activation_error_method: ErrorMethod | AutoErrorMethod | None = None
    activation_n_bits: int | None = None
    activation_quantization_method: QuantizationMethod | None = None
    enable_activation_quantization: bool | None = None

    def __post_init__(self) -> None:
        for name, (_, parse) in _FIELDS.items():
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, parse(v, f"NodeOverride: {name}"))

    def set_fields(self) -> dict[str, Any]:
        """The fields that are set (not ``None``), in declaration order."""
        return {k: getattr(self, k) for k in _FIELDS if getattr(self, k) is not None}

    def kinds(self) -> frozenset[str]:
        """Which quantizers the set fields concern: ``"weights"``, ``"activation"``."""
        return frozenset(_FIELDS[k][0] for k in self.set_fields())

    def then(self, later: NodeOverride) -> NodeOverride:
        """``self`` with every field ``later`` sets replaced (a later rule wins)."""
        return dataclasses.replace(self, **later.set_fields())


def node_override(fields: Mapping[str, Any], where: str) -> NodeOverride:
    """A :class:`NodeOverride` from a mapping of field names (jq's ``overrides`` values), or
    the :class:`NodeOverride` given.

    Raises:
      TypeError: ``fields`` is not a mapping; ValueError: an unknown or no field name, or a bad
        value (``where`` names the entry).
    """
    if isinstance(fields, NodeOverride):
        if not fields.set_fields():
            raise ValueError(f"{where}: sets no field; the fields are {', '.join(_FIELDS)}")
        return fields
    if not isinstance(fields, Mapping):
        raise TypeError(
            f"{where}: must be a mapping of field names to values or a NodeOverride, got "
            f"{type(fields).__name__}"
        )
    unknown = [k for k in fields if k not in _FIELDS]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(str(k), list(_FIELDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{where}: unknown field {k!r}{hint}; the fields are {', '.join(_FIELDS)}")
    if not fields:
        raise ValueError(f"{where}: sets no field; the fields are {', '.join(_FIELDS)}")
    try:
        return NodeOverride(**fields)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {str(e).removeprefix('NodeOverride: ')}") from None


def fields_text(o: NodeOverride, kind: str | None = None) -> str:
    """The fields ``o`` sets (of ``kind`` only, if given), as ``name=value``."""

    def text(v: Any) -> str:
        return v.value if isinstance(v, (ErrorMethod, AutoErrorMethod, QuantizationMethod)) else v

    items = [(k, v) for k, v in o.set_fields().items() if kind in (None, _FIELDS[k][0])]
    return ", ".join(f"{k}={text(v)}" for k, v in items)
