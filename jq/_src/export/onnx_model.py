"""A jq graph as an ONNX model, written with ``onnx.helper``.

Why straight from the graph form rather than through ``torch.onnx``: the graph already says,
node by node, where each quantizer sits and what its grid is, so every Q/DQ pair, integer
kernel and int32 bias is written exactly where onnxruntime's QDQ selectors look for them, with
the scales jq computed; ``torch.onnx`` would have to rediscover them from traced
``fake_quantize_*`` calls (and has no path for int8 initializers with per-channel
DequantizeLinear). It also keeps the writer free of torch: any jq graph exports, whatever
front end made it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ..graph.apply import apply
from ..graph.graph import Graph, Node
from ..report.quant_info import LayerInfo
from . import onnx_ops_index, onnx_ops_math  # noqa: F401  (they fill ONNX_OPS)
from .onnx_builder import Builder, OnnxOptions
from .onnx_mctq import (
    MCTQ_DOMAIN,
    MCTQ_DOMAIN_VERSION,
    MCTQ_RUNTIME_NOTE,
    MctqNode,
    activation_node,
    weights_node,
)
from .onnx_ops import ONNX_MIN_OPSET, ONNX_OPS, ONNX_REFUSED
from .onnx_quant import activation_grid, bias_int32, kernel_grid, kernel_integers
from .scales import OnnxGrid

IR_VERSION = 10  # what onnxruntime >= 1.18 reads; opsets up to 22 need no newer IR
MIN_QDQ_OPSET = 13  # per-axis QuantizeLinear / DequantizeLinear
MIN_16_BIT_OPSET = 21  # int16 / uint16 QuantizeLinear / DequantizeLinear
KERNEL_OPS = ("conv", "conv_transpose", "linear")
REGRID_OPS = ("reshape", "permute", "slice", "select")  # value-preserving: INT8 re-grids them


class GraphBuilder(Builder):
    """A :class:`Builder` that knows the jq graph: value shapes and dtypes (from an abstract
    trace on the example), kernel grids, and the grids of quantized values."""

    def __init__(
        self, onnx, options, graph: Graph, avals: Mapping[str, Any], layers, reserved=()
    ) -> None:
        super().__init__(onnx, options, set(graph.inputs) | set(reserved))
        self.avals = avals
        self.kernels = {q.name: q for q in layers if q.kind == "weights"}
        self.activations = {q.name: q for q in layers if q.kind == "activation"}
        self.grid_of: dict[str, OnnxGrid] = {}  # ONNX value -> grid of the DQ that made it

    def shape_of(self, value: str) -> tuple[int, ...]:
        return tuple(self.avals[value].shape)

    def rank_of(self, value: str) -> int:
        return len(self.avals[value].shape)

    def dtype_of(self, value: str) -> str:
        return str(self.avals[value].dtype)

    def _kernel(self, node: Node, w: np.ndarray) -> tuple[OnnxGrid, int | None] | None:
        if self.options.mode != "int8" or node.name not in self.kernels:
            return None
        return kernel_grid(self.kernels[node.name], w.ndim)

    def weight(self, node: Node, params: Mapping[str, np.ndarray]) -> str:
        """The kernel of ``node``: a float initializer, (INT8) int8 + DequantizeLinear, or
        (MCTQ) a float initializer read by its ``mct_quantizers`` weights quantizer."""
        w = np.asarray(params["weight"], np.float32)
        if self.options.mode == "mctq" and node.name in self.kernels:
            layer = self.kernels[node.name]
            kernel_integers(w, *kernel_grid(layer, w.ndim), node.name)  # on its grid, or raise
            mq = weights_node(layer, w.ndim)
            w_name = self.const(w, f"{node.name}.weight")
            return self.mctq(w_name, mq, f"{node.name}.weight.quant")
        found = self._kernel(node, w)
        if found is None:
            return self.const(w, f"{node.name}.weight")
        grid, axis = found
        q = kernel_integers(w, grid, axis, node.name)
        name = self.dequantize(q, grid, f"{node.name}.weight", axis)
        self.grid_of[name] = grid._replace(scale=grid.scale)
        return name

    def bias(self, node: Node, params: Mapping[str, np.ndarray], x: str | None) -> list[str]:
        """``[bias]`` (``[]`` without one): int32 + DequantizeLinear in INT8 mode when the
        layer's input and kernel are quantized, else a float initializer."""
        b = params.get("bias")
        if b is None:
            return []
        b = np.asarray(b, np.float32)
        w = np.asarray(params["weight"], np.float32)
        found = self._kernel(node, w)
        if found is None or x not in self.grid_of or node.op == "conv_transpose":
            return [self.const(b, f"{node.name}.bias")]
        w_grid = found[0]
        q, scale = bias_int32(b, self.grid_of[x], w_grid)
        grid = OnnxGrid(scale, np.zeros(scale.shape, np.int32), "int32", 32)
        return [self.dequantize(q, grid, f"{node.name}.bias", 0)]

    def fake_quant(self, node: Node, x: str, params: Mapping[str, np.ndarray]) -> str:
        """A quantizer: Q/DQ (int16 from opset 21), float ops for wide grids below that."""
        if self.options.mode == "float":
            return x
        if self.options.mode == "mctq":
            layer = self.activations.get(node.inputs[0])
            return self.mctq(x, activation_node(node, params, layer), node.name)
        grid = activation_grid(node, params)
        if grid.n_bits > 8 and self.opset < MIN_16_BIT_OPSET:
            return self._float_quantizer(node, x, params)
        out = self.qdq(x, grid, node.name)
        self.grid_of[out] = grid
        return out

    def regrid(self, node: Node, x: str | None, out: str) -> str:
        """INT8: the reshape or permute ``out`` of a quantized ``x`` gets a Q/DQ pair on its grid
        (exact: its values are on that grid already).

        onnxruntime's QDQ propagation would insert that pair itself, and gets it wrong for
        int8 at opset 21 on x86: it writes ``output_dtype=INT8``, then its int8-to-uint8 pass
        makes the zero point uint8 and the session fails to load (efficientnet_b0's flatten
        of SiLU values). Written here, the Gemm after a flatten also fuses into QGemm with an
        int32 bias."""
        if node.op not in REGRID_OPS or x is None:
            return out
        return self.regrid_value(x, out, node.name)

    def regrid_value(self, x: str, out: str, base: str) -> str:
        """INT8: ``out``, a value-preserving transform (reshape, transpose, slice) of the
        quantized ONNX value ``x``, with a Q/DQ pair on ``x``'s grid (see :meth:`regrid`);
        ``out`` unchanged otherwise."""
        if self.options.mode != "int8" or x not in self.grid_of:
            return out
        grid = self.grid_of[x]
        requantized = self.qdq(out, grid, f"{base}.regrid")
        self.grid_of[requantized] = grid
        return requantized

    def mctq(self, x: str, mq: MctqNode, base: str) -> str:
        """``x`` through an ``mct_quantizers`` node; its tensor inputs as ``Constant`` nodes,
        as MCT's exporter writes them."""
        consts = [
            self.add("Constant", [], f"{base}.{k}", value=self.onnx.numpy_helper.from_array(c))
            for k, c in mq.consts
        ]
        return self.add(mq.op_type, [x, *consts], base, domain=MCTQ_DOMAIN, **mq.attrs)

    def _float_quantizer(self, node: Node, x: str, params) -> str:
        """``clip(round(x * (1/scale)), q_min, q_max) * scale`` in float ops: jq's arithmetic
        (ONNX's Round is half to even)."""
        n = node.name
        inv = self.const(np.float32(1) / np.asarray(params["scale"], np.float32), f"{n}.inv")
        r = self.add("Round", [self.add("Mul", [x, inv], f"{n}.scaled")], f"{n}.round")
        lo = self.const(np.asarray(params["q_min"], np.float32), f"{n}.q_min")
        hi = self.const(np.asarray(params["q_max"], np.float32), f"{n}.q_max")
        c = self.add("Clip", [r, lo, hi], f"{n}.clip")
        return self.add("Mul", [c, self.const(np.asarray(params["scale"], np.float32), n)], n)


def value_avals(graph: Graph, params, example: Sequence[np.ndarray]) -> dict[str, Any]:
    """``{value: ShapeDtypeStruct}`` of every input and node on the example's shapes."""
    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in example]
    names = tuple(n.name for n in graph.nodes)
    _, acts = jax.eval_shape(lambda p, *xs: apply(graph, p, *xs, capture=names), params, *specs)
    return {**dict(zip(graph.inputs, specs, strict=True)), **acts}


def unsupported_ops(graph: Graph, opset: int | None = None) -> list[str]:
    """``"node (op): why"`` for every node the ONNX writer cannot write: no emitter, a
    refused op, or (given ``opset``) an op first written at a later opset."""
    found = []
    for n in graph.nodes:
        if n.op == "fake_quant":
            continue
        if n.op in ONNX_REFUSED:
            found.append(f"{n.name} ({n.op}): {ONNX_REFUSED[n.op]}")
        elif n.op not in ONNX_OPS:
            found.append(f"{n.name} ({n.op}): no ONNX emitter")
        elif opset is not None and opset < ONNX_MIN_OPSET[n.op]:
            found.append(f"{n.name} ({n.op}): needs opset {ONNX_MIN_OPSET[n.op]}, asked {opset}")
    return found


def _emit(b: GraphBuilder, node: Node, xs: list[str], params) -> str:
    """The ONNX value of ``node``; an op ONNX cannot express raises naming the node."""
    try:
        return ONNX_OPS[node.op](b, node, xs, params)
    except NotImplementedError as e:
        raise NotImplementedError(f"node {node.name!r} ({node.op}): no ONNX form: {e}") from e


def to_onnx(
    graph: Graph,
    params: Mapping[str, Mapping[str, Any]],
    layers: Sequence[LayerInfo],
    example: Sequence[np.ndarray],
    options: OnnxOptions,
    output_names: Sequence[str] | None = None,
):
    """The ONNX ``ModelProto`` of ``graph`` (checked with ``onnx.checker``).

    Args:
      graph, params: the (quantized) jq graph and its params (NumPy or JAX arrays).
      layers: the quantized tensors' records (``QuantizationInfo.layers``): kernel grids.
      example: one array per graph input (dtypes and the shapes of the trace).
      options: :class:`OnnxOptions`.
      output_names: names of the model outputs (default ``output`` / ``output_<i>``).

    Raises:
      NotImplementedError: ops without an ONNX form at ``options.opset`` (all listed), or a
        node whose attributes ONNX cannot express (named).
      ValueError: INT8 or MCTQ with per-group kernels (named): their per-channel
        DequantizeLinear and ``mct_quantizers`` nodes have no per-group form.
    """
    import onnx

    _check_no_groups(layers, options.mode)
    missing = unsupported_ops(graph, options.opset)
    if missing:
        raise NotImplementedError(f"to_onnx: no ONNX form for {len(missing)} node(s): {missing}")
    params = {k: {p: np.asarray(v) for p, v in d.items()} for k, d in params.items()}
    out_names = _output_names(graph, output_names)
    avals = value_avals(graph, params, example)
    b = GraphBuilder(onnx, options, graph, avals, layers, reserved=out_names)
    env = {name: name for name in graph.inputs}
    for node in graph.nodes:
        xs = [env[s] for s in node.inputs]
        if node.op == "fake_quant":
            env[node.name] = b.fake_quant(node, xs[0], params[node.name])
        else:
            out = _emit(b, node, xs, params.get(node.name, {}))
            env[node.name] = b.regrid(node, xs[0] if xs else None, out)
    outputs = _outputs(b, graph, env, out_names)
    inputs = _inputs(onnx, graph, example)
    g = onnx.helper.make_graph(b.nodes, "jq", inputs, outputs, initializer=b.initializers)
    opsets = [onnx.helper.make_opsetid("", options.opset)]
    if options.mode == "mctq":
        opsets.append(onnx.helper.make_opsetid(MCTQ_DOMAIN, MCTQ_DOMAIN_VERSION))
    model = onnx.helper.make_model(g, opset_imports=opsets, producer_name="jq")
    if options.mode == "mctq":
        model.doc_string = MCTQ_RUNTIME_NOTE
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _check_no_groups(layers: Sequence[LayerInfo], mode: str) -> None:
    """Refuse per-group kernels (``LayerInfo.group_size``) in the integer formats; the
    fakely-quantized format writes them (float kernels already on their grids)."""
    grouped = [q.name for q in layers if q.kind == "weights" and q.group_size is not None]
    if grouped and mode in ("int8", "mctq"):
        names = ", ".join(repr(n) for n in grouped[:8]) + (" ..." if len(grouped) > 8 else "")
        raise ValueError(
            f"jq.exporter: the {mode.upper()} format cannot express per-group kernel parameters "
            f"(TargetPlatform.weights_group_size), found on layer(s) {names}; export with "
            "quantization_format=QuantizationFormat.FAKELY_QUANT (kernels as floats on "
            "their grids)"
        )


def _inputs(onnx, graph: Graph, example: Sequence[np.ndarray]) -> list:
    infos = []
    declared = graph.input_shapes or (None,) * len(graph.inputs)
    for name, a, shape in zip(graph.inputs, example, declared, strict=True):
        dims = [("batch" if d == -1 else int(d)) for d in (shape or a.shape)]
        elem = onnx.helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype)
        infos.append(onnx.helper.make_tensor_value_info(name, elem, dims))
    return infos


def _output_names(graph: Graph, names: Sequence[str] | None) -> list[str]:
    n = len(graph.outputs)
    if names is None:
        return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]
    names = list(names)
    clash = set(names) & set(graph.inputs)
    if (
        len(names) != n
        or len(set(names)) != n
        or clash
        or not all(isinstance(s, str) for s in names)
    ):
        raise ValueError(
            f"output_names: {n} distinct strings expected, none an input name, got {names}"
        )
    return names


def _outputs(b: GraphBuilder, graph: Graph, env: dict[str, str], names: list[str]) -> list:
    infos = []
    for out, value in zip(names, graph.outputs, strict=True):
        b.nodes.append(
            b.onnx.helper.make_node("Identity", [env[value]], [out], name=f"{out}/Identity")
        )
        elem = b.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(b.dtype_of(value)))
        dims = [None] * b.rank_of(value)  # sizes left to the runtime (the batch is dynamic)
        infos.append(b.onnx.helper.make_tensor_value_info(out, elem, dims))
    return infos
