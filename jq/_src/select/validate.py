"""Eager checks of user input: clear errors naming the function and the argument."""

from __future__ import annotations

import numbers
from typing import Any, cast

import jax
import numpy as np

MAX_BITS = 16


def check_bit_width(value: Any, where: str) -> int:
    """``value`` as a bit width: an int in ``1..MAX_BITS``; ``where`` names the function and
    the field in the error (``"jq.fake_quant: n_bits"``, ``"TargetPlatform: weights_n_bits"``).

    Raises:
      TypeError: not an int (a bool is not); ValueError: out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: must be an int bit width, got {type(value).__name__} {value!r}")
    if not 1 <= int(value) <= MAX_BITS:
        raise ValueError(f"{where}: must be in 1..{MAX_BITS}, got {value}")
    return int(value)


def check_n_bits(n_bits: Any, fn: str) -> int:
    """``n_bits`` must be an int in ``[1, 16]`` (:func:`check_bit_width`)."""
    return check_bit_width(n_bits, f"{fn}: n_bits")


def check_p(p: Any, fn: str) -> float:
    """``p`` (the Lp exponent) must be a finite number > 0."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{fn}: p must be a real number, got {type(p).__name__}")
    if not np.isfinite(cast(float, p)) or p <= 0:
        raise ValueError(f"{fn}: p must be a finite number > 0, got {p}")
    return float(p)


def check_min_threshold(m: Any, fn: str) -> float:
    """``min_threshold`` must be a finite number > 0."""
    if (
        isinstance(m, bool)
        or not isinstance(m, numbers.Real)
        or not np.isfinite(cast(float, m))
        or m <= 0
    ):
        raise ValueError(f"{fn}: min_threshold must be a finite number > 0, got {m!r}")
    return float(m)


def as_float_array(
    x: Any, name: str, fn: str, *, allow_empty: bool = False
) -> np.ndarray | jax.Array:
    """Check that ``x`` is a real floating array with finite values; return it as an array.

    Raises:
      TypeError: ``x`` is not array-like, or has an integer, bool or complex dtype.
      ValueError: ``x`` is empty, or holds NaN or inf.
    """
    if not hasattr(x, "dtype"):
        try:
            x = np.asarray(x)
        except Exception as e:  # pragma: no cover - numpy's message is enough
            raise TypeError(f"{fn}: {name} must be array-like, got {type(x).__name__}") from e
    dtype = np.dtype(x.dtype)
    if dtype.kind != "f":
        raise TypeError(
            f"{fn}: {name} must have a real floating dtype (float16/32/64 or bfloat16), got {dtype}"
        )
    if x.size == 0 and not allow_empty:
        raise ValueError(f"{fn}: {name} is empty (shape {tuple(x.shape)})")
    if not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{fn}: {name} contains NaN or inf values")
    arr: np.ndarray | jax.Array = x
    return arr


def check_axis(axis: Any, ndim: int, name: str, fn: str) -> int:
    """Normalise a (possibly negative) axis; raise if out of range."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be an int, got {type(axis).__name__}")
    if not -ndim <= cast(int, axis) < ndim:
        raise ValueError(f"{fn}: {name}={axis} is out of range for a tensor of rank {ndim}")
    return int(axis) % ndim


def check_histogram(bins: Any, counts: Any, fn: str) -> tuple[np.ndarray | jax.Array, np.ndarray]:
    """Check a histogram: sorted ``bins`` of ``len(counts) + 1`` edges, counts >= 0, not all 0.

    Accepts a leading batch axis (``bins[L, B+1]``, ``counts[L, B]``).
    """
    bins = as_float_array(bins, "bins", fn)
    counts = np.asarray(counts)
    if counts.dtype.kind not in "fiu":
        raise TypeError(f"{fn}: counts must be a real numeric array, got dtype {counts.dtype}")
    if counts.size == 0:
        raise ValueError(f"{fn}: counts is empty")
    if not np.all(np.isfinite(counts)):
        raise ValueError(f"{fn}: counts contains NaN or inf values")
    if bins.ndim != counts.ndim or bins.shape[:-1] != counts.shape[:-1]:
        raise ValueError(
            f"{fn}: bins {tuple(bins.shape)} and counts {tuple(counts.shape)} must have the same "
            "leading shape"
        )
    if bins.shape[-1] != counts.shape[-1] + 1:
        raise ValueError(
            f"{fn}: bins must have len(counts) + 1 edges; got {bins.shape[-1]} edges for "
            f"{counts.shape[-1]} counts"
        )
    if np.any(counts < 0):
        raise ValueError(f"{fn}: counts must be >= 0, found negative counts")
    if np.any(np.sum(counts, axis=-1) == 0):
        raise ValueError(f"{fn}: counts are all zero (an empty histogram has no threshold)")
    if np.any(np.diff(np.asarray(bins), axis=-1) < 0):
        raise ValueError(f"{fn}: bins must be sorted in increasing order")
    return bins, counts
