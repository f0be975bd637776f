"""Result pytrees."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np


class QParams(NamedTuple):
    """Quantization parameters of one tensor (a pytree).

    Attributes:
      threshold: POWER_OF_TWO / SYMMETRIC threshold. Per channel it has the tensor's rank with
        ``-1`` at ``channel_axis`` and ``1`` elsewhere (broadcastable against the tensor); per
        tensor a scalar. ``None`` for UNIFORM.
      range_min, range_max: UNIFORM range, shaped like ``threshold``; ``None`` otherwise.
      signed: whether the grid is signed (bool, or a bool array in batch results).
      errors: with ``return_errors=True``, the error of every candidate evaluated, shape
        ``(rounds, candidates, channels)`` (iterative searches; unused rounds are ``nan``) or
        ``(candidates, channels)`` (power-of-two); ``None`` otherwise.
      candidates: the candidates matching ``errors`` (thresholds, or ``(..., 2)`` ranges).

    jq's functions return JAX arrays; NumPy arrays are accepted wherever a ``QParams`` is
    passed in (e.g. to :func:`jq.fake_quant`).
    """

    threshold: jax.Array | np.ndarray | None = None
    range_min: jax.Array | np.ndarray | None = None
    range_max: jax.Array | np.ndarray | None = None
    signed: jax.Array | np.ndarray | bool = True
    errors: jax.Array | np.ndarray | None = None
    candidates: jax.Array | np.ndarray | None = None
