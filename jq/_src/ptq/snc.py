"""Shift-negative correction (SNC; MCT 2.6.1's ``apply_shift_negative_correction``, on in
MCT's defaults).

A non-linearity with a small negative tail (SiLU, Hardswish, GELU, ...) wastes half of a signed
grid. When its output feeds one conv/linear layer (possibly through reshapes, average pools or
dropout), SNC adds a constant ``shift`` (the smallest unsigned grid point ``>= |min|``) after
the non-linearity, quantizes the shifted value unsigned with the same threshold, raises the
non-linearity's own quantizer to 16 bits, and folds ``-shift * sum(W)`` into the layer's bias.
A layer that pads its input gets an explicit pad with value ``shift`` instead (shifted zeros).

This module decides where and by how much (:func:`plan_shifts`) and computes the bias fold
(:func:`shifted_bias`); ``jq/_src/ptq/pipeline.py`` rewrites the quantized graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from ..graph.graph import Graph

SNC_OPS = frozenset({"silu", "hardswish", "gelu", "prelu", "elu"})
BYPASS_OPS = frozenset({"reshape", "avg_pool", "dropout"})
NON_LINEAR_BITS = 16  # MCT's SHIFT_NEGATIVE_NON_LINEAR_NUM_BITS


class Shift(NamedTuple):
    """One shift-negative correction.

    Attributes:
      value: the non-linearity's output (its quantizer goes to 16 bits).
      layer: the conv/linear node whose bias absorbs the shift.
      bypass: nodes between them (reshape, avg_pool, dropout), in order.
      shift: the constant added (float32 value, a multiple of ``threshold / 2^n_bits``).
      threshold: the non-linearity's threshold, reused unsigned for the shifted value.
    """

    value: str
    layer: str
    bypass: tuple[str, ...]
    shift: float
    threshold: float


def shift_value(minimum: float, threshold: float, n_bits: int) -> float:
    """The smallest point of the unsigned grid ``k * t / 2^n`` (float32) that is ``>= -minimum``;
    0 if none is (MCT's ``argmin`` over an all-``inf`` vector)."""
    levels = 2**n_bits
    points = np.linspace(0, threshold - threshold / levels, levels).astype(np.float32)
    delta = points + minimum
    delta[delta < 0] = np.inf
    return float(points[int(np.argmin(delta))])


def _next_layer(graph: Graph, value: str) -> tuple[str | None, tuple[str, ...]]:
    """The conv/linear that alone reads ``value`` (through bypass ops), and the bypass nodes."""
    bypass: list[str] = []
    while True:
        if value in graph.outputs:
            return None, ()
        readers = graph.consumers(value)
        if len(readers) != 1 or readers[0].inputs.count(value) != 1:
            return None, ()
        r = readers[0]
        if r.inputs[0] == value and (
            r.op == "linear" or (r.op == "conv" and len(r.attr("padding", ())) == 2)
        ):
            return r.name, tuple(bypass)
        if r.op not in BYPASS_OPS or r.inputs[0] != value:
            return None, ()
        bypass.append(r.name)
        value = r.name


def plan_shifts(
    graph: Graph,
    *,
    quantized: frozenset[str] | set[str],
    minimum: Mapping[str, float],
    thresholds: Mapping[str, float | None],
    n_bits: int | Mapping[str, int],
    ratio: float,
) -> tuple[Shift, ...]:
    """Where MCT's SNC applies, and the shift of each.

    Args:
      graph: the float graph (batch norms folded).
      quantized: values with an activation quantizer.
      minimum: calibration minimum of each quantized value.
      thresholds: chosen threshold of each quantized value (``None`` for uniform ranges, which
        SNC skips as MCT does).
      n_bits: activation bit width: one for all, or per quantized value (steered layers).
      ratio: ``shift_negative_ratio``: applies when ``-min / t <= ratio``.

    Returns:
      One :class:`Shift` per corrected non-linearity, in graph order.
    """
    shifts = []
    for n in graph.nodes:
        if n.op not in SNC_OPS or n.name not in quantized:
            continue
        t = thresholds.get(n.name)
        m = float(minimum[n.name])
        if t is None or not (m < 0 and -m / t <= ratio):
            continue
        layer, bypass = _next_layer(graph, n.name)
        if layer is not None:
            bits = n_bits if isinstance(n_bits, int) else n_bits[n.name]
            shifts.append(Shift(n.name, layer, bypass, shift_value(m, t, bits), float(t)))
    return tuple(shifts)


def shifted_bias(op: str, weight, bias, shift: float) -> np.ndarray:
    """``bias - shift * sum(W over every axis but the output one)``: the layer's output is
    unchanged when its input is shifted by ``shift`` (float32, ``(out,)``).

    ``op`` is ``"conv"`` (weight ``(out, in/groups, *k)``) or ``"linear"`` (``(out, in)``).
    """
    w = np.asarray(weight, np.float64)
    fold = shift * w.reshape(w.shape[0], -1).sum(axis=1)
    b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, np.float64)
    return (b - fold).astype(np.float32)
