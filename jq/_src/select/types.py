"""Result pytrees."""

from __future__ import annotations

from typing import NamedTuple

import jax


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
    """

    threshold: jax.Array | None = None
    range_min: jax.Array | None = None
    range_max: jax.Array | None = None
    signed: jax.Array | bool = True
    errors: jax.Array | None = None
    candidates: jax.Array | None = None
