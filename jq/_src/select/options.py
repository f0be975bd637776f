"""What the weight and activation searches share before tracing: option checks and precision."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import jax

from .enums import ErrorMethod, QuantizationMethod, parse_error_method, parse_method
from .validate import check_min_threshold, check_n_bits, check_p


def x64(compat: bool) -> AbstractContextManager[Any]:
    """Context manager of the search's precision: float64 for ``mct_compat``, else JAX's own
    setting (so a user's ``jax_enable_x64`` is kept)."""
    cm: AbstractContextManager[Any] = jax.enable_x64(True if compat else jax.enable_x64.value)
    return cm


def parse_options(
    n_bits: Any, method: Any, error_method: Any, p: Any, min_threshold: Any, fn: str
) -> tuple[int, QuantizationMethod, ErrorMethod, float, float]:
    """Checked ``(n_bits, method, error_method, p, min_threshold)``; errors name ``fn``."""
    return (
        check_n_bits(n_bits, fn),
        parse_method(method, fn),
        parse_error_method(error_method, fn),
        check_p(p, fn),
        check_min_threshold(min_threshold, fn),
    )
