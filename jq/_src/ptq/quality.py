"""Checks of a PTQ result that say when it is bad: :class:`QualityWarning` and its findings.

A quantized model can come back with every number in range and still be useless: on an
untrained network whose activations shrink to ~1e-10, every activation threshold is clamped to
``min_threshold``, every quantized activation rounds to zero, and the output SQNR is 0 dB.
:func:`quality_findings` looks at the result (pure: the info's layers, the calibration ranges)
and returns one sentence per problem; :func:`warn_quality` raises each as a Python warning. The
PTQ info record keeps the same sentences in its notes (prefixed ``"warning: "``).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from types import FrameType

import numpy as np

from ..report.quant_info import LayerInfo

# Output SQNR below which the result is called bad. 10 dB means a noise power of 10 % of the
# signal's (noise RMS ~32 % of the signal RMS); 8-bit PTQ of a trained model gives 20-40 dB at
# the output, so a figure under 10 dB means the quantized model no longer computes what the
# float one did.
SQNR_FLOOR_DB = 10.0
# The floor is checked only where every quantizer has at least this many bits. An ideal b-bit
# quantizer of a Gaussian gives about 6.02 b - 7 dB per tensor (17 dB at 4 bits, 29 at 6), and
# each quantized layer adds its noise: a 3-layer MLP at 4 bits reaches 9.1-9.9 dB with every
# error method (tests/ptq/test_auto.py), as good as PTQ gets at that width. At 6 bits ten
# layers of equal noise still leave ~19 dB, so a figure under 10 dB there is a broken result.
SQNR_FLOOR_MIN_BITS = 6
# "Most layers": more than this fraction of the kernels or of the activation quantizers.
MOST = 0.5
# A value is "near zero" when its largest magnitude over the calibration data is below
# ``min_threshold``: no threshold the search may pick fits it, and below min_threshold / 2**b it
# quantizes to zero.
# Inputs whose largest magnitude is below this are "tiny" (the likely cause is then the data).
TINY_INPUT = 1e-3


class QualityWarning(UserWarning):
    """The quantized model is likely useless: a PTQ call's result fails a quality check (output
    SQNR under ``SQNR_FLOOR_DB``, thresholds clamped to ``min_threshold`` on most layers, or
    calibration activations all near zero). The same text is in ``info.notes``."""


def _at_floor(layer: LayerInfo, floor: float) -> bool:
    return layer.threshold is not None and float(np.max(layer.threshold)) <= floor * (1 + 1e-6)


def _floor_finding(layers: Sequence[LayerInfo], floor: float) -> str | None:
    parts = []
    for kind, label in (("weights", "kernels"), ("activation", "activation quantizers")):
        thresholded = [li for li in layers if li.kind == kind and li.threshold is not None]
        hit = [li.name for li in thresholded if _at_floor(li, floor)]
        if thresholded and len(hit) > MOST * len(thresholded):
            parts.append(f"{len(hit)} of {len(thresholded)} {label} (e.g. {', '.join(hit[:3])})")
    if not parts:
        return None
    return (
        f"thresholds at the clamp floor min_threshold={floor:.3g} on {' and '.join(parts)}: "
        "their values are smaller than the smallest range the quantizer may use, so they "
        "quantize coarsely or to zero"
    )


def _near_zero_finding(
    peaks: Mapping[str, float], input_peaks: Mapping[str, float], floor: float
) -> str | None:
    small = sorted((p, n) for n, p in peaks.items() if p < floor)
    if not peaks or len(small) <= MOST * len(peaks):
        return None
    median = float(np.median(list(peaks.values())))
    biggest_in = max(input_peaks.values(), default=float("nan"))
    if biggest_in < TINY_INPUT:
        cause = f"inputs scaled far too small (they reach only |x| = {biggest_in:.3g})"
    else:
        cause = (
            "an untrained (random-init) model, or inputs not normalised the way it was "
            f"trained (the inputs reach |x| = {biggest_in:.3g})"
        )
    return (
        f"calibration activations near zero: {len(small)} of {len(peaks)} quantized "
        f"activations never exceed min_threshold={floor:.3g} (median largest |x| "
        f"{median:.3g}, smallest {small[0][0]:.3g} at {small[0][1]}); likely cause: {cause}"
    )


def _sqnr_finding(output_sqnr_db: float | None, layers: Sequence[LayerInfo]) -> str | None:
    if output_sqnr_db is None or output_sqnr_db == float("inf"):  # no outputs, or exact
        return None
    if min((li.n_bits for li in layers), default=8) < SQNR_FLOOR_MIN_BITS:
        return None
    if output_sqnr_db >= SQNR_FLOOR_DB:
        return None
    return (
        f"output SQNR {output_sqnr_db:.2f} dB is below the floor of {SQNR_FLOOR_DB:g} dB "
        "(noise power over 10 % of the signal's): the quantized model's outputs differ "
        "from the float model's"
    )


def quality_findings(
    layers: Sequence[LayerInfo],
    output_sqnr_db: float | None,
    *,
    minimum: Mapping[str, float],
    maximum: Mapping[str, float],
    inputs: Sequence[str],
    min_threshold: float,
) -> tuple[str, ...]:
    """One sentence per quality problem of a PTQ result (empty when it looks sound).

    Args:
      layers: the result's :class:`LayerInfo` entries.
      output_sqnr_db: the model outputs' SQNR (``None`` without float outputs: not checked).
      minimum, maximum: the calibration range of each quantized activation (statistics pass).
      inputs: the graph's input names (their ranges tell the data from the model).
      min_threshold: the threshold floor of the run (``CoreConfig.min_threshold``).

    Returns:
      The findings, in the order: output SQNR, clamp floor, near-zero activations.
    """
    peaks = {
        n: max(abs(float(minimum[n])), abs(float(maximum[n])))
        for n in maximum
        if n in minimum and n not in inputs
    }
    input_peaks = {
        n: max(abs(float(minimum[n])), abs(float(maximum[n])))
        for n in inputs
        if n in minimum and n in maximum
    }
    found = (
        _sqnr_finding(output_sqnr_db, layers),
        _floor_finding(layers, min_threshold),
        _near_zero_finding(peaks, input_peaks, min_threshold),
    )
    return tuple(f for f in found if f is not None)


# Frames in these folders are jq's own (the package and the adapters beside it): a warning
# points at the first frame outside them, the user's call.
_JQ = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_OWN = (_JQ + os.sep, os.path.join(os.path.dirname(_JQ), "adapters") + os.sep)


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the caller's innermost frame outside jq (1 = the caller)."""
    level = 1
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_OWN):
        level, frame = level + 1, frame.f_back
    return level


def warn_quality(findings: Sequence[str], fn: str) -> None:
    """Each finding as a :class:`QualityWarning` (``"<fn>: <finding>"``), attributed to the
    user's line that called jq."""
    level = _user_stacklevel() + 1
    for f in findings:
        warnings.warn(f"{fn}: {f}", QualityWarning, stacklevel=level)
