"""Mask values: activations that carry attention-mask constants, left unquantized.

Transformers add ``torch.finfo(float32).min`` (about -3.4e38) or a similar huge constant to
attention scores before a softmax, so that masked positions get zero weight. A quantizer on
such a value has no useful grid: any threshold that keeps the mask keeps nothing of the scores,
and MCT's searches return ``inf`` there, whose fake-quantizer turns the model's outputs into NaN.
jq leaves a value unquantized when its calibration range reaches ``MASK_LEVEL`` in magnitude
(both modes; MCT cannot run such models, so there is no parity to keep) and says so in
``quantization_info.notes``; the softmax after it is quantized as usual. This is the plan's one
decision that needs the statistics pass; the kernel searches (begun before it) never read it.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from .plan import Plan

if TYPE_CHECKING:
    from ..calibrate import Statistics

MASK_LEVEL = 2.0**100  # |x| this large is a mask constant, not a signal (float32 max ~2**128)


def mask_values(stats: Statistics) -> tuple[str, ...]:
    """The collected values whose range reaches ``MASK_LEVEL`` in magnitude."""
    return tuple(
        v for v in stats.minimum if max(abs(stats.minimum[v]), abs(stats.maximum[v])) >= MASK_LEVEL
    )


def without_masks(plan: Plan, stats: Statistics) -> Plan:
    """The final ``plan``: no activation quantizer on :func:`mask_values` (recorded in
    ``Plan.masks``)."""
    masks = mask_values(stats)
    if not masks:
        return plan
    gone = set(masks)
    return plan._replace(
        activations=tuple(v for v in plan.activations if v not in gone),
        act_configs=MappingProxyType({v: c for v, c in plan.act_configs.items() if v not in gone}),
        masks=masks,
    )
