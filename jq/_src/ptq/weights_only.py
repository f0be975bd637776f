"""Weights-only PTQ without calibration data: the kernels' searches alone.

``quantize_graph(graph, params, None, target_platform=TargetPlatform(...,
quantize_activations=False))`` takes this route: the float graph is rewritten and planned as
usual (no activation quantizer), every kernel's parameters are searched from the weights
alone, and the quantized graph is built. No statistics pass runs, so nothing that needs data
is available: HMSE (Hessian scores from samples) and AUTO (its model-level checks) are
refused, bias correction (the layers' input means) is skipped and said so in the notes, and
the info has no SQNR.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..graph.graph import Graph
from ..runtime.timing import StageClock
from .auto_select import Mix
from .build import build_quantized
from .calibrate import Statistics
from .data import Shapes, nothing_retained
from .info import make_info
from .placement import place
from .plan_searches import ActChoice, KernelSearches, select_kernels
from .prepare import FloatGraphs, Prepared
from .settings import Settings
from .sqnr import Sqnr
from .steering import bn_aliases

NO_BIAS_CORRECTION_NOTE = (
    "weights only, no calibration data: no bias correction (it needs the layers' input means)"
)


def check_data_free(st: Settings) -> Settings:
    """``st`` for a call without calibration data, bias correction off.

    Raises:
      ValueError: activations are quantized (their ranges need data), or the weights' error
        method is HMSE or AUTO (Hessian scores and AUTO's checks need data), naming the fix.
    """
    if st.tp.quantize_activations:
        raise ValueError(
            f"{st.fn}: representative_data_gen is None, but activation quantizers need "
            "calibration data; pass data, or quantize weights only "
            "(TargetPlatform(quantize_activations=False))"
        )
    needs = [m for m, on in (("hmse", st.w_hmse), ("auto", st.w_auto)) if on]
    if needs:
        raise ValueError(
            f"{st.fn}: weights_error_method {needs[0]!r} needs calibration data (Hessian "
            "scores from samples / AUTO's model-level check), but representative_data_gen is "
            "None; pass data or use mse, mae, lp or noclipping"
        )
    qc = dataclasses.replace(st.qc, weights_bias_correction=False)
    return st._replace(qc=qc)


def prepare_without_data(
    graph: Graph, params, st: Settings, source_graphs: Callable[[Shapes], Graph] | None
) -> Prepared:
    """:func:`.prepare.prepare` without a first batch: the same rewrites and kernel plan
    (steering rules applied); every value counts as float (only activation quantizers would
    read that, and there are none)."""
    shapes = tuple(tuple(s) for s in graph.input_shapes if s is not None)
    graphs = FloatGraphs(
        graph, params, qc=st.qc, source_graphs=source_graphs, first_shapes=shapes, fn=st.fn
    )
    fgraph, rw = graphs.graph, graphs.rewritten
    aliases = bn_aliases(graph, rw.folded)
    plan = place(fgraph, qc=st.qc, tp=st.tp, rules=st.rules, aliases=aliases, fn=st.fn)
    nodes = {n.name: n for n in fgraph.nodes}
    values = frozenset(fgraph.inputs) | frozenset(nodes)
    return Prepared(fgraph, graphs.params, rw.folded, plan, nodes, values, (), graphs, rw.collapsed)


def quantize_without_data(
    graph: Graph, params, st: Settings, source_graphs: Callable[[Shapes], Graph] | None
) -> tuple[Prepared, Any, Any]:
    """The quantized kernels of a weights-only call without data.

    Returns:
      ``(prep, built, info)``: the prepared float model, the built quantized graph
      (``build.Built``) and its :class:`jq.core.QuantizationInfo` (no SQNR).
    """
    total, clock = StageClock(), StageClock()
    st = check_data_free(st)  # per-layer rules' methods included
    prep = prepare_without_data(graph, params, st, source_graphs)
    clock.lap("prepare")
    with KernelSearches(prep, st, clock) as searches:
        kernels = select_kernels(searches, prep, nothing_retained(0), clock)
    clock.lap("weights")
    acts = ActChoice({}, [], [], ())
    stats = Statistics({}, {}, {}, {}, 0)
    mix = Mix(kernels, acts, {}, NO_BIAS_CORRECTION_NOTE)
    built = build_quantized(prep, stats, kernels.qparams, acts.quant, st)
    clock.lap("build")
    total.lap("total")
    timings = {**clock.timings, **total.timings}
    info = make_info(prep, st, mix, built, Sqnr({}, None), stats, n_retained=0, timings=timings)
    return prep, built, info
