"""Typed option values: quantization methods and error methods."""

from __future__ import annotations

import enum


class QuantizationMethod(enum.Enum):
    """How a threshold or range maps to a quantization grid."""

    POWER_OF_TWO = "power_of_two"
    SYMMETRIC = "symmetric"
    UNIFORM = "uniform"


class ErrorMethod(enum.Enum):
    """The error metric minimised over candidate thresholds.

    Values follow MCT's ``QuantizationErrorMethod`` names; ``int(...)`` codes are MCT's.
    """

    NOCLIPPING = "noclipping"
    MSE = "mse"
    MAE = "mae"
    KL = "kl"
    LP = "lp"
    HMSE = "hmse"


QuantizationErrorMethod = ErrorMethod

_MCT_CODES = {"noclipping": 0, "mse": 1, "mae": 2, "kl": 4, "lp": 5, "hmse": 6}


def _parse(enum_type, value, arg: str, fn: str):
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


def parse_method(value, fn: str = "jq") -> QuantizationMethod:
    """Return a ``QuantizationMethod`` from an enum member or a (case-insensitive) name."""
    return _parse(QuantizationMethod, value, "method", fn)


def parse_error_method(value, fn: str = "jq") -> ErrorMethod:
    """Return an ``ErrorMethod`` from an enum member or a (case-insensitive) name."""
    return _parse(ErrorMethod, value, "error_method", fn)


def mct_code(error_method: ErrorMethod) -> int:
    """MCT's integer code of an error method."""
    return _MCT_CODES[error_method.value]
