"""Post-training quantization of a jq graph: MCT's PTQ pipeline as a list of named passes.

``quantize_graph`` is the framework-neutral pipeline every front end calls with a graph, its
params and a batch source (``jq_torch`` for PyTorch models). Each pass is a function of typed
records in its own module; in the order the code runs them:

=======================  ====================================  ==================================
pass                     function                              record out
=======================  ====================================  ==================================
check the settings       ``settings.settings``                 ``Settings`` (rules parsed)
shard                    ``shard.resolve_mesh``                ``Shards``, the searches' ``Mesh``
open the data            ``data.open_calibration_data``        ``CalibrationData``
rewrite (in prepare)     ``prepare.float_rewrites``            ``Rewritten`` (folded, collapsed)
place (in prepare)       ``placement.place``                   ``Plan``: every quantizer, its
                                                               settings (platform, policy,
                                                               steering ``Steering``)
prepare                  ``prepare.prepare``                   ``Prepared`` (rewritten, planned)
probe                    ``pipeline.probe_spec``               ``ProbeSpec`` (one forward program)
start kernel searches    ``plan_searches.KernelSearches``      searches without Hessian scores,
                                                               begun in a thread
statistics               ``calibrate.stats_step``              ``Statistics`` + ``Retained``
masks                    ``placement.without_masks``           ``Plan`` (final: mask values off)
select kernels           ``plan_searches.select_kernels``      ``KernelChoice`` (Hessian scores
                                                               first, then the searches' results)
select activations       ``plan_searches.select_activations``  ``ActChoice``
choose per layer         ``auto_select.choose_per_layer``      ``Mix`` (AUTO only)
build                    ``build.build_quantized``             ``Built``
check the mix            ``auto_select.check_mix``             ``Mix``, ``Built`` (AUTO only)
measure SQNR             ``sqnr.measure_sqnr``                 ``Sqnr``
check finite             ``sqnr.check_finite``                 raises on NaN/inf outputs
make the info            ``info.make_info``                    ``QuantizationInfo``
=======================  ====================================  ==================================

Placement is the plan's one owner: no later pass changes a quantizer's settings, and only the
masks pass (the one decision that needs statistics) drops quantizers. The kernel searches
read the plan before it (masks concern activations only). Without data (weights only),
``weights_only.quantize_without_data`` runs settings, rewrite and place, the kernel searches,
build and the info.

The result runs with ``jq.apply`` (jit-able) and exports with ``jq_torch.to_torch``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from jax.sharding import Mesh

from ..graph.graph import Graph
from ..report.quant_info import QuantizationInfo
from ..runtime.cache import ensure_compilation_cache
from ..runtime.timing import StageClock
from ..select.enums import ErrorMethod
from .auto_select import Mix, check_mix, choose_per_layer
from .build import Built, build_quantized, out_channels
from .calibrate import (
    Statistics,
    StatsSpec,
    StatsState,
    stats_finalize,
    stats_init,
    stats_step,
)
from .config import CoreConfig, TargetPlatform
from .data import (
    Arrays,
    CalibrationData,
    Retained,
    Shapes,
    accumulate,
    nothing_retained,
    open_calibration_data,
    retain,
)
from .hessian import N_SAMPLES
from .info import make_info
from .placement import without_masks
from .plan_searches import KernelSearches, select_activations, select_kernels
from .prepare import Prepared, prepare
from .probe import BIASED_OPS, ProbeSpec
from .settings import Settings, settings
from .shard import (
    Shards,
    check_single_process_options,
    lockstep,
    report_failure,
    resolve_mesh,
    search_mesh,
)
from .sqnr import SQNR_BATCHES, check_finite, measure_sqnr

AUTO_CHECK_BATCHES = 8  # with AUTO: batches kept to compare the per-layer mix with each method


class PTQResult(NamedTuple):
    """Output of :func:`quantize_graph`.

    Attributes:
      graph: the quantized graph (``fake_quant`` nodes after quantized values).
      params: its params (fake-quantized kernels, corrected biases, quantizer ranges).
      info: :class:`QuantizationInfo`.
      float_graph, float_params: the float graph after batch-norm folding and collapsing (the
        reference the SQNR figures compare against).
      graph_for: the quantized graph for other input shapes (``graph`` rebased on the folded
        float graph for those shapes; see :func:`rebase_graph`).
    """

    graph: Graph
    params: dict
    info: QuantizationInfo
    float_graph: Graph
    float_params: dict
    graph_for: Callable[[Shapes], Graph] | None = None


@contextlib.contextmanager
def _stage(clock: StageClock, name: str) -> Iterator[None]:
    clock.start()
    yield
    clock.stop(name)


def quantize_graph(
    graph: Graph,
    params: Mapping[str, Any],
    representative_data_gen: Callable[[], Any] | CalibrationData | None,
    *,
    core_config: CoreConfig | None = None,
    target_platform: TargetPlatform | None = None,
    graph_for: Callable[[Shapes], Graph] | None = None,
    mesh: Any = None,
    fn: str = "jq.ptq.quantize_graph",
) -> PTQResult:
    """Quantize a float jq graph after training, as MCT's PTQ does (README: "Quantizing a
    PyTorch model").

    Args:
      graph: the float graph (from ``jq_torch.from_torch`` or built by hand).
      params: its params pytree.
      representative_data_gen: a callable returning an iterable of batches; a batch is a list
        or tuple with one array per graph input (MCT's convention) or a single array. Batches
        may differ in batch size only. A front end that has opened the data already passes
        its ``CalibrationData``. ``None``: weights only without data (a target platform with
        ``quantize_activations=False``; no HMSE/AUTO, no bias correction, no SQNR; see
        ``jq._src.ptq.weights_only``).
      core_config, target_platform: :class:`jq.core.CoreConfig`, :class:`jq.core.TargetPlatform`
        (default: MCT's defaults and its default platform). The core config's per-layer rules
        (``overrides``, MCT's ``debug_config`` / ``bit_width_config``) select nodes by the names
        of ``graph`` (README: "Steering single layers").
      graph_for: the float graph for other input shapes (default: ``graph`` for any shape).
      mesh: jq only: the devices each batch is split over (README: "Calibrating on many
        devices"): a ``jax.sharding.Mesh``, ``None`` (all, if several) or ``False`` (one).
      fn: the name used in error messages.

    Returns:
      :class:`PTQResult` ``(graph, params, info, float_graph, float_params, graph_for)``.

    Raises:
      TypeError / ValueError: bad config or mesh, a per-layer rule that matches no node (the
        message names the closest names), a data generator that yields nothing, batches of
        the wrong number, shape or dtype, NaN/inf data or activations, a quantized model
        with non-finite values. Nothing is returned on error.

    Examples:
      >>> import jax, numpy as np, jq
      >>> g = jq.Graph(inputs=("x",), nodes=(jq.Node("fc", "linear", ("x",)),), outputs=("fc",))
      >>> p = {"fc": {"weight": np.eye(4, dtype=np.float32), "bias": np.zeros(4, np.float32)}}
      >>> xs = [np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4)]
      >>> cfg = jq.core.CoreConfig(progress=False)
      >>> res = jq.ptq.quantize_graph(g, p, lambda: ([x] for x in xs), core_config=cfg)
      >>> [(l.name, l.kind) for l in res.info.layers]
      [('fc', 'weights'), ('x', 'activation'), ('fc', 'activation')]
      >>> jq.apply(res.graph, res.params, xs[0]).shape
      (8, 4)
    """
    ensure_compilation_cache()
    total, clock = StageClock(), StageClock()
    st = settings(core_config, target_platform, fn)
    if representative_data_gen is None:  # weights only: the kernels' searches alone
        from .weights_only import quantize_without_data

        prep, built, info = quantize_without_data(
            _check_graph(graph, fn), params, st, source_graphs=graph_for
        )
        return _result(prep, built, info, graph_for is not None)
    shards, local = _shards(mesh, st)
    data = _open(_check_graph(graph, fn), representative_data_gen, fn)
    with _stage(clock, "prepare"):
        prep = prepare(graph, params, data, st, source_graphs=graph_for)  # the plan included
    probe = probe_spec(prep)  # one forward program for the statistics and SQNR passes
    with KernelSearches(prep, st, clock, local) as searches:  # searches start in a thread
        with _stage(clock, "statistics"):
            stats, retained = _statistics(prep, data, st, shards, probe)
            prep = prep._replace(plan=without_masks(prep.plan, stats))
        with _stage(clock, "weights"):
            kernels = select_kernels(
                searches, prep, retained, clock, progress=st.progress, data=data
            )
    with _stage(clock, "activations"):
        acts = select_activations(prep, stats, st, local)
    mix, built = _build(prep, stats, Mix(kernels, acts, {}), data, retained, st, clock)
    with _stage(clock, "sqnr"):
        sqnr = measure_sqnr(prep, built, retained, probe)
    check_finite(sqnr, fn)
    total.lap("total")
    timings = {**clock.timings, **total.timings}
    n = len(retained.batches)
    info = make_info(prep, st, mix, built, sqnr, stats, n_retained=n, timings=timings)
    return _result(prep, built, info, graph_for is not None)


def _build(
    prep: Prepared,
    stats: Statistics,
    mix: Mix,
    data: CalibrationData,
    retained: Retained,
    st: Settings,
    clock: StageClock,
) -> tuple[Mix, Built]:
    """``(mix, built)``: AUTO's per-layer choice (when asked for), the quantized graph, and
    AUTO's whole-model check of the mix."""
    if mix.acts.auto or mix.kernels.auto:
        with _stage(clock, "auto"):
            mix = choose_per_layer(prep, stats, mix.kernels, mix.acts, data, st)
    with _stage(clock, "build"):
        built = build_quantized(prep, stats, mix.kernels.qparams, mix.acts.quant, st)
    if mix.analysis and prep.float_outputs:
        with _stage(clock, "auto_check"):
            mix, built = check_mix(prep, stats, mix, built, retained, st)
    return mix, built


def _result(prep: Prepared, built: Built, info: QuantizationInfo, rebase: bool) -> PTQResult:
    """The :class:`PTQResult`; with ``rebase``, its ``graph_for`` for other input shapes."""
    rebased = functools.partial(_rebased, built.graph, prep) if rebase else None
    return PTQResult(built.graph, built.params, info, prep.graph, prep.params, rebased)


def _check_graph(graph: Any, fn: str) -> Graph:
    if not isinstance(graph, Graph):
        raise TypeError(f"{fn}: graph must be a jq Graph, got {type(graph).__name__}")
    return graph


def _open(graph: Graph, representative_data_gen: Any, fn: str) -> CalibrationData:
    """:func:`open_calibration_data` for ``graph``'s inputs; in a job of several processes a
    failure here reaches the others (waiting at the statistics pass's first step) too."""
    try:
        return open_calibration_data(representative_data_gen, fn, len(graph.inputs))
    except Exception as err:
        report_failure(err)
        raise


def _shards(mesh: Any, st: Settings) -> tuple[Shards | None, Mesh | None]:
    """The calibration devices of ``mesh`` and this process's devices for the searches (see
    ``shard``), refusing the options that a job of several processes cannot run."""
    options = {"AUTO": st.act_auto or st.w_auto, "weights_error_method=HMSE": st.w_hmse}
    check_single_process_options([o for o, on in options.items() if on], st.fn)
    shards = resolve_mesh(mesh, st.fn)
    return shards, search_mesh(shards)


def _statistics(
    prep: Prepared, data: CalibrationData, st: Settings, shards: Shards | None, probe: ProbeSpec
) -> tuple[Statistics, Retained]:
    """The statistics pass over the data (opened once, each batch split over ``shards``),
    keeping what later passes need: whole batches (SQNR, AUTO's check) and single samples
    (Hessian scores)."""
    plan = prep.plan
    n_keep = AUTO_CHECK_BATCHES if plan.act_auto or plan.w_auto else SQNR_BATCHES
    n_samples = N_SAMPLES if plan.needs_scores else 0
    batches = lockstep(data.batches(progress=st.progress, desc="jq statistics"), st.fn)
    keep = functools.partial(retain, shapes=data.shapes, n_batches=n_keep, n_samples=n_samples)
    spec = StatsSpec(
        hist_names=tuple(prep.plan.activations),
        mean_specs=prep.mean_specs,
        hmse=st.qc.activation_error_method is ErrorMethod.HMSE,
        mct_compat=st.compat,
        shards=shards,
        fn=st.fn,
        probe=probe,
    )

    def step(
        state: tuple[StatsState, Retained], graph: Graph, arrays: Arrays
    ) -> tuple[StatsState, Retained]:
        stats, kept = state
        return stats_step(spec, prep.params, stats, graph, arrays), keep(kept, arrays)

    start = (stats_init(spec), nothing_retained(len(data.shapes)))
    (state, retained), _ = accumulate(
        batches, lambda shapes: prep.graphs(spec.graph_shapes(shapes)), step, start
    )
    return stats_finalize(spec, state, st.fn), retained


def probe_spec(prep: Prepared) -> ProbeSpec:
    """The :class:`ProbeSpec` of a prepared model (before masks drop any quantizer)."""
    channels = tuple(
        (
            k,
            out_channels(
                prep.nodes[k].op, prep.params[k]["weight"], prep.nodes[k].attr("groups", 1)
            ),
        )
        for k in prep.kernel_names
        if prep.nodes[k].op in BIASED_OPS
    )
    return ProbeSpec(
        tuple(prep.plan.activations), prep.mean_specs, tuple(prep.kernel_names), channels
    )


def _rebased(qgraph: Graph, prep: Prepared, shapes: Shapes) -> Graph:
    return rebase_graph(qgraph, prep.graph, prep.graphs(shapes))


def rebase_graph(qgraph: Graph, float_graph: Graph, new_float_graph: Graph) -> Graph:
    """``qgraph`` (quantized from ``float_graph``) for the input shapes of ``new_float_graph``.

    Graphs converted from torch bake shapes into attributes (reshape targets, ...). Every node
    of ``qgraph`` that comes from ``float_graph`` takes the attributes of its counterpart in
    ``new_float_graph`` where the two float graphs differ; nodes the quantization added or
    rewrote (quantizers, shift-negative adds and pads) are kept.

    Raises:
      ValueError: the float graphs differ in more than attributes (names, ops or wiring).
    """
    old = {n.name: n for n in float_graph.nodes}
    new = {n.name: n for n in new_float_graph.nodes}
    same = old.keys() == new.keys() and all(
        (old[k].op, old[k].inputs) == (new[k].op, new[k].inputs) for k in old
    )
    if not same or float_graph.inputs != new_float_graph.inputs:
        raise ValueError(
            "the model's graph for the new input shapes differs from the quantized one in more "
            "than shapes (nodes, ops or wiring); quantize it for those shapes"
        )
    nodes = [
        n.replace(attrs=new[n.name].attrs, shape=new[n.name].shape)
        if n.name in old and old[n.name].attrs != new[n.name].attrs
        else n
        for n in qgraph.nodes
    ]
    return qgraph.replace(nodes=tuple(nodes), input_shapes=new_float_graph.input_shapes)
