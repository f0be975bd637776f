"""The statistics step on one device without Hessian weights: the model's probe program
(``probe.py``) computes the activations, and the histograms are updated on fixed tiles
(``select/histogram_rows.py``), so a model costs one compiled program here, shared with the
SQNR pass, and the histogram programs are the same for every model.

Results equal the fused step's (``calibrate._stats_step``): minima and maxima are exact in any
order, default-mode counts are exact integers, compat-mode counts are integers in float64. The
channel means are float32 reductions whose rounding follows the program XLA fuses them into:
they can differ from the fused step's in the last bit (measured: 1 ulp on some channels in
compat mode, none in the default mode).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from ..graph.graph import Graph
from ..select.histogram_rows import mct_histograms, update_states
from .probe import Probe, ProbeSpec, float_params, run_probe


class StepOut(NamedTuple):
    """One batch's contribution: new histogram states (default mode) or per-batch MCT
    histograms (compat), channel-mean sums, and the batch's minima and maxima."""

    hists: dict[str, Any]
    sums: dict[str, Any]
    minimum: dict[str, float]
    maximum: dict[str, float]


def _range(v: np.ndarray) -> tuple[float, float]:
    if v.size == 0:
        return np.inf, -np.inf
    return float(np.min(v)), float(np.max(v))


def probe_step(
    spec: ProbeSpec,
    graph: Graph,
    params: Mapping,
    inputs: Sequence[np.ndarray],
    *,
    hist_names: Sequence[str],
    hists: Mapping[str, Any],
    sums: Mapping[str, Any] | None,
    state_min: Mapping[str, float],
    state_max: Mapping[str, float],
    compat: bool,
    n_bins: int,
) -> StepOut:
    """The statistics of one batch ``inputs`` through ``graph``'s probe (gates off)."""
    probe: Probe = spec.probe(graph)
    fparams = float_params(params, probe, spec.channels)
    _, caps, means = jax.device_get(run_probe(probe, fparams, inputs))
    values = {n: np.asarray(caps[probe.captured(n)], np.float32) for n in hist_names}
    ranges = {n: _range(v) for n, v in values.items()}
    bmin = {n: r[0] for n, r in ranges.items()}
    bmax = {n: r[1] for n, r in ranges.items()}
    finite = {n: v for n, v in values.items() if np.isfinite(bmin[n]) and np.isfinite(bmax[n])}
    new: dict[str, Any]
    if compat:
        lo = {n: np.float64(np.float32(bmin[n])) for n in finite}
        hi = {n: np.float64(np.float32(bmax[n])) for n in finite}
        with jax.enable_x64(True):
            new = mct_histograms(finite, lo, hi, n_bins)
    else:
        lo = {n: np.minimum(np.float32(hists[n].minimum), np.float32(bmin[n])) for n in finite}
        hi = {n: np.maximum(np.float32(hists[n].maximum), np.float32(bmax[n])) for n in finite}
        new = {**hists, **update_states(hists, finite, lo, hi)} if finite else dict(hists)
    new_sums = {
        k: (np.asarray(m) if sums is None else np.asarray(sums[k]) + np.asarray(m))
        for k, m in means.items()
    }
    mins = {n: min(state_min[n], bmin[n]) for n in hist_names}
    maxs = {n: max(state_max[n], bmax[n]) for n in hist_names}
    return StepOut(new, new_sums, mins, maxs)
