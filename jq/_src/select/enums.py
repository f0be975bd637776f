"""Typed option values: quantization methods and error methods."""

from __future__ import annotations

import enum
from typing import Any, TypeVar


class QuantizationMethod(enum.Enum):
    """How a threshold or range maps to a quantization grid."""

    POWER_OF_TWO = "power_of_two"
    SYMMETRIC = "symmetric"
    UNIFORM = "uniform"


class ErrorMethod(enum.Enum):
    """The error metric minimised over candidate thresholds.

    Names follow MCT's ``QuantizationErrorMethod`` (whose members are accepted wherever an
    ``ErrorMethod`` is); ``QuantizationErrorMethod`` is an alias of this enum.
    """

    NOCLIPPING = "noclipping"
    MSE = "mse"
    MAE = "mae"
    KL = "kl"
    LP = "lp"
    HMSE = "hmse"


QuantizationErrorMethod = ErrorMethod

AUTO = "auto"


class AutoErrorMethod(enum.Enum):
    """The config value ``"auto"`` (``QuantizationConfig.*_error_method``): choose per layer.

    Kept apart from :class:`jq.ErrorMethod` on purpose: AUTO is a pipeline option, not an error
    metric the threshold search can minimise (``jq.weights_qparams(..., error_method="auto")``
    stays an error).
    """

    AUTO = AUTO


def is_auto(value: Any) -> bool:
    """Whether a config value asks for the AUTO error method (``"auto"`` in any case, or
    :attr:`AutoErrorMethod.AUTO`)."""
    if value is AutoErrorMethod.AUTO:
        return True
    return isinstance(value, str) and value.strip().lower() == AUTO


_E = TypeVar("_E", bound=enum.Enum)


def _parse(enum_type: type[_E], value: Any, arg: str, fn: str) -> _E:
    if isinstance(value, enum_type):
        return value
    # Accept MCT's own enum members (same names) without importing MCT.
    name = getattr(value, "name", None)
    if isinstance(name, str) and not isinstance(value, str):
        value = name
    if isinstance(value, str):
        key = value.strip().lower()
        for member in enum_type:
            if key in (member.value, member.name.lower()):
                return member
    valid = ", ".join(repr(m.value) for m in enum_type)
    raise ValueError(f"{fn}: unknown {arg}={value!r}; expected one of {valid}")


def parse_method(value: Any, fn: str = "jq") -> QuantizationMethod:
    """Return a ``QuantizationMethod`` from an enum member or a (case-insensitive) name."""
    return _parse(QuantizationMethod, value, "method", fn)


def parse_error_method(value: Any, fn: str = "jq") -> ErrorMethod:
    """Return an ``ErrorMethod`` from an enum member or a (case-insensitive) name."""
    return _parse(ErrorMethod, value, "error_method", fn)
