"""Test-only compositions of the statistics pass (``jq._src.ptq.calibrate``'s pure step).

The pipeline runs ``stats_init``, ``stats_step`` per batch and ``stats_finalize`` in its one
batch loop; these helpers run the same steps on their own (:func:`collect_statistics`) and
merge the states of two shards of one dataset (:func:`stats_merge`), so tests can check the
step against a whole pass and against split data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from jq._src.graph.graph import Graph
from jq._src.ptq.calibrate import (
    Statistics,
    StatsSpec,
    StatsState,
    _per_value,
    stats_finalize,
    stats_init,
    stats_step,
)
from jq._src.ptq.data import _progress, accumulate
from jq._src.select.histogram import histogram_merge


def collect_statistics(
    graphs: Callable[[tuple[tuple[int, ...], ...]], Graph],
    params,
    batches: Iterable[tuple[np.ndarray, ...]],
    *,
    hist_names: Sequence[str],
    mean_specs: Sequence[tuple[str, tuple[str, int]]] = (),
    hmse: bool = False,
    mct_compat: bool = False,
    n_bins: int = 2048,
    seed: int = 0,
    progress: bool = True,
    fn: str = "collect_statistics",
) -> Statistics:
    """Every batch through the float graph once: ``stats_init``, ``stats_step`` per batch,
    ``stats_finalize`` (``graphs``: the float graph for each tuple of input shapes;
    ``hist_names`` ... ``n_bins``: see ``StatsSpec``; ``seed``: the Rademacher draws';
    ``progress``: a tqdm bar)."""
    spec = StatsSpec(tuple(hist_names), tuple(mean_specs), hmse, mct_compat, n_bins)
    step = functools.partial(stats_step, spec, params)
    batches = _progress(batches, progress, "jq statistics")
    state, _ = accumulate(batches, graphs, step, stats_init(spec, seed))
    return stats_finalize(spec, state, fn)


def stats_merge(spec: StatsSpec, a: StatsState, b: StatsState) -> StatsState:
    """The state of ``a``'s batches and ``b``'s together (shards of one dataset).

    Histograms, minima and maxima merge exactly; channel-mean sums add (float rounding may
    differ from one sequential pass). The merged key is ``a``'s.
    """
    if spec.mct_compat:
        hists = {
            n: a.hists[n]._replace(
                bins=a.hists[n].bins + b.hists[n].bins,
                counts=a.hists[n].counts + b.hists[n].counts,
            )
            for n in spec.hist_names
        }
    else:
        ha, hb = _per_value(a.hists), _per_value(b.hists)
        hists = {n: histogram_merge(ha[n], hb[n]) for n in spec.hist_names}
    if a.sums is None or b.sums is None:
        sums = a.sums if b.sums is None else b.sums
    else:
        sums = {k: a.sums[k] + b.sums[k] for k in a.sums}
    mins = {n: min(a.minimum[n], b.minimum[n]) for n in spec.hist_names}
    maxs = {n: max(a.maximum[n], b.maximum[n]) for n in spec.hist_names}
    return StatsState(hists, sums, mins, maxs, a.key, a.n_batches + b.n_batches)
