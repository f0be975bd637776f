"""The first PTQ pass: rewrite the float graph, plan the quantizers.

:func:`prepare` rewrites the float graph as MCT does before statistics (:func:`float_rewrites`:
batch-norm folding, then linear and residual collapsing), traces it abstractly on the first
batch's shapes (which values are floats) and places the quantizers (``placement.place``).
:class:`FloatGraphs` gives the rewritten float graph for any input shapes, the one place where
graphs for new shapes are made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..graph.apply import apply
from ..graph.graph import Graph, Node
from .collapse import Collapse, collapse_linear, collapse_residual
from .config import QuantizationConfig
from .data import CalibrationData, Shapes, check_shapes
from .fold import fold_batch_norm
from .placement import BOUNDED_OPS, Plan, place
from .settings import Settings
from .steering import bn_aliases


class Rewritten(NamedTuple):
    """The float graph after the pre-statistics rewrites.

    Attributes:
      graph, params: the rewritten graph and its params.
      folded: names of the batch norms folded.
      collapsed: the linear and residual collapses made, in order.
    """

    graph: Graph
    params: dict
    folded: tuple[str, ...]
    collapsed: tuple[Collapse, ...]


def float_rewrites(graph: Graph, params, qc: QuantizationConfig) -> Rewritten:
    """MCT 2.6.1's pre-statistics rewrites in its order (``get_finalized_graph``): batch-norm
    folding (also into ``linear`` outside compat mode), then linear collapsing, then residual
    collapsing (each on when its ``qc`` flag is, in both modes)."""
    graph, params, folded = fold_batch_norm(graph, params, include_linear=not qc.mct_compat)
    collapsed: tuple[Collapse, ...] = ()
    if qc.linear_collapsing:
        graph, params, collapsed = collapse_linear(graph, params, mct_compat=qc.mct_compat)
    if qc.residual_collapsing:
        graph, params, done = collapse_residual(graph, params)
        collapsed += done
    return Rewritten(graph, params, folded, collapsed)


class FloatGraphs:
    """The rewritten float graph for each tuple of input shapes (built once per shapes).

    A graph serves the shapes its ``input_shapes`` accept (``-1``: a dynamic batch axis, as
    ``jq_torch.from_torch`` records where the model allows it). ``source_graphs(shapes)``, when
    given, is the front end's float graph (before the rewrites) for other shapes (a front end
    whose graphs bake shapes in; ``quantize_graph``'s ``graph_for``).
    """

    def __init__(
        self,
        graph: Graph,
        params,
        *,
        qc: QuantizationConfig,
        source_graphs: Callable[[Shapes], Graph] | None,
        first_shapes: Shapes,
        fn: str,
    ) -> None:
        self._params = params
        self._qc = qc
        self._source_graphs = source_graphs
        self._source = graph
        self._fn = fn
        self.rewritten = float_rewrites(graph, params, qc)
        self.graph, self.params = self.rewritten.graph, self.rewritten.params
        self.first_shapes = first_shapes
        self._cache: dict[Shapes, Graph] = {first_shapes: self.graph}

    def __call__(self, shapes: Shapes) -> Graph:
        if shapes not in self._cache:
            self._cache[shapes] = self._make(shapes)
        return self._cache[shapes]

    def _make(self, shapes: Shapes) -> Graph:
        if self._source_graphs is None:
            source = self._source
            if not source.accepts(shapes):
                why = f" ({source.pinned_by})" if source.pinned_by else ""
                raise ValueError(
                    f"{self._fn}: a batch has shapes {shapes} but the graph was built for "
                    f"{source.input_shapes}{why}; give every batch the same shape"
                )
            return self.graph
        return float_rewrites(self._source_graphs(shapes), self._params, self._qc).graph


class Prepared(NamedTuple):
    """The float model, rewritten (folded, collapsed), with its quantizers planned.

    Attributes:
      graph, params: the float graph after the rewrites (:func:`float_rewrites`), its params.
      folded: names of the batch norms folded.
      plan: where the quantizers go (:class:`jq._src.ptq.placement.Plan`).
      nodes: ``{name: Node}`` of ``graph``.
      float_values: names of the float-valued inputs and nodes.
      mean_specs: ``((layer, (input value, channel axis)), ...)`` for bias correction.
      graphs: the rewritten float graph for any input shapes (:class:`FloatGraphs`).
      collapsed: the linear and residual collapses made (:mod:`jq._src.ptq.collapse`).
    """

    graph: Graph
    params: dict
    folded: tuple[str, ...]
    plan: Plan
    nodes: Mapping[str, Node]
    float_values: frozenset[str]
    mean_specs: tuple[tuple[str, tuple[str, int]], ...]
    graphs: FloatGraphs
    collapsed: tuple[Collapse, ...] = ()

    @property
    def kernel_names(self) -> list[str]:
        return [k for k, _ in self.plan.kernels]

    def op_of(self, value: str) -> str:
        """The op of node ``value`` (``"input"`` for a graph input)."""
        return self.nodes[value].op if value in self.nodes else "input"

    @property
    def searched(self) -> list[str]:
        """Quantized values whose range is searched (not fixed by their op, like sigmoid's)."""
        return [v for v in self.plan.activations if self.op_of(v) not in BOUNDED_OPS]

    @property
    def float_outputs(self) -> list[str]:
        return [f for f in self.graph.outputs if f in self.float_values]


def prepare(
    graph: Graph,
    params,
    data: CalibrationData,
    st: Settings,
    source_graphs: Callable[[Shapes], Graph] | None = None,
) -> Prepared:
    """Rewrite ``graph`` (fold, collapse) and plan its quantizers (see :class:`Prepared`).

    ``data`` was opened for ``graph``'s inputs (:func:`open_calibration_data`, which checks
    the count): its first batch is trusted but for the shapes ``graph`` records.

    Raises:
      ValueError: the first batch does not fit the shapes ``graph`` records, or the model does
        not run on it.
    """
    fn = st.fn
    if graph.input_shapes:
        check_shapes(data.first, graph.input_shapes, 0, fn)
    graphs = FloatGraphs(
        graph, params, qc=st.qc, source_graphs=source_graphs, first_shapes=data.shapes, fn=fn
    )
    fgraph, fparams = graphs.graph, graphs.params
    float_values = _float_values(fgraph, fparams, data, fn)
    rw = graphs.rewritten
    plan = place(
        fgraph, qc=st.qc, tp=st.tp, rules=st.rules, float_values=float_values,
        aliases=bn_aliases(graph, rw.folded), fn=fn,
    )  # fmt: skip
    nodes = {n.name: n for n in fgraph.nodes}
    mean_specs: tuple = ()
    if st.qc.weights_bias_correction:
        mean_specs = tuple(
            (k, (nodes[k].inputs[0], -1 if nodes[k].op == "linear" else 1)) for k, _ in plan.kernels
        )
    return Prepared(
        fgraph, fparams, rw.folded, plan, nodes, float_values, mean_specs, graphs, rw.collapsed
    )


def _float_values(graph: Graph, params, data: CalibrationData, fn: str) -> frozenset[str]:
    """The float-valued inputs and nodes of ``graph`` on the first batch (abstract trace)."""
    first = data.first
    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in first]
    names = tuple(n.name for n in graph.nodes)
    try:
        _, shapes = jax.eval_shape(
            lambda p, *xs: apply(graph, p, *xs, capture=names), params, *specs
        )
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{fn}: the model does not run on the first batch (input shapes {data.shapes}, "
            f"dtypes {[str(a.dtype) for a in first]}): {str(e).splitlines()[0]}"
        ) from e
    values = {i for i, a in zip(graph.inputs, first, strict=True) if a.dtype.kind == "f"}
    values |= {n for n, s in shapes.items() if jnp.issubdtype(s.dtype, jnp.floating)}
    return frozenset(values)
