"""Mask values: activations that carry attention-mask constants, left unquantized.

Transformers add ``torch.finfo(float32).min`` (about -3.4e38) or a similar huge constant to
attention scores before a softmax, so that masked positions get zero weight. A quantizer on
such a value has no useful grid: any threshold that keeps the mask keeps nothing of the scores,
and MCT's searches return ``inf`` there, whose fake-quantizer turns the model's outputs into NaN.
jq leaves a value unquantized when its calibration range reaches ``MASK_LEVEL`` in magnitude
(both modes; MCT cannot run such models, so there is no parity to keep) and says so in
``quantization_info.notes``; the softmax after it is quantized as usual.
"""

from __future__ import annotations

from .calibrate import Statistics
from .prepare import Prepared

MASK_LEVEL = 2.0**100  # |x| this large is a mask constant, not a signal (float32 max ~2**128)


def mask_values(stats: Statistics) -> tuple[str, ...]:
    """The collected values whose range reaches ``MASK_LEVEL`` in magnitude."""
    return tuple(
        v for v in stats.minimum if max(abs(stats.minimum[v]), abs(stats.maximum[v])) >= MASK_LEVEL
    )


def without_masks(prep: Prepared, stats: Statistics) -> Prepared:
    """``prep`` with no activation quantizer on :func:`mask_values`."""
    masks = set(mask_values(stats))
    if not masks:
        return prep
    acts = tuple(v for v in prep.plan.activations if v not in masks)
    return prep._replace(plan=prep.plan._replace(activations=acts))
