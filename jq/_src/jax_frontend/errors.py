"""Errors of the JAX front end (``jq.from_jax``): the converters' one error
(:mod:`jq._src.errors`), under the names this front end has always used."""

from __future__ import annotations

from ..errors import Unsupported as Unsupported
from ..errors import UnsupportedError

UnsupportedPrimitiveError = UnsupportedError
"""Some primitives of the traced program have no conversion (``.primitives`` lists them)."""

__all__ = ["Unsupported", "UnsupportedPrimitiveError"]
