"""``from_onnx``: an ONNX model into jq's graph form.

The ONNX graph is walked once, in its (topological) node order. Initializers and ``Constant``
nodes are constants; a node whose inputs are all constants is folded with NumPy
(``_fold.py``), and ``Shape`` of a runtime tensor is its shape at conversion, so shape
subgraphs disappear; every other node goes through its converter (``_ops.py``,
``_ops_shape.py``), which emits jq nodes. Weights (convolution, ``Gemm``, ``MatMul`` by a
constant, normalization) become the params of ``conv`` / ``linear`` / ``batch_norm`` /
``layer_norm`` nodes, in PyTorch's layouts (which ONNX shares: NCHW, OIHW).

A dynamic batch axis (a ``dim_param`` or unknown size on axis 0 of the inputs) is kept:
``graph.input_shapes`` has ``-1`` there. The converter traces shapes at a batch size of
:data:`TRACE_BATCH` and writes ``-1`` where a reshape keeps axis 0; a node that needs the batch
size as a number (a reshape moving the batch axis, a size read by ``Shape`` and used other than
as a reshape target) pins it, and ``graph.pinned_by`` says which.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jq import Graph, Node

from ._context import Context, OnnxNode, Tensor, Value
from ._errors import Unconvertible, Unsupported, UnsupportedOpError
from ._fold import FOLDERS, onnx_dtype
from ._table import CONVERTERS

_FN = "jq_onnx.from_onnx"
MIN_OPSET = 13
# The batch size shapes are traced at when axis 0 is dynamic: a prime no layer width is likely
# to equal, so that a reshape that keeps axis 0 is told from one that moves the batch axis.
TRACE_BATCH = 7
_SOURCES = ("Constant", "Shape", "Size")
_SHAPE_READERS = ("Reshape",)  # ops that take a size read by Shape and keep the batch dynamic


def load_model(model: Any, fn: str = _FN):
    """``model`` as an ``onnx.ModelProto``: a proto, or a path to an ``.onnx`` file."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (str, os.PathLike)):
        if not os.path.isfile(model):
            raise FileNotFoundError(f"{fn}: no ONNX file at {os.fspath(model)!r}")
        return onnx.load(os.fspath(model))
    raise TypeError(
        f"{fn}: model must be an onnx.ModelProto or a path to an .onnx file, "
        f"got {type(model).__name__}"
    )


def _opset(proto, fn: str) -> int:
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if version < MIN_OPSET:
        raise ValueError(
            f"{fn}: the model uses ONNX opset {version}; jq_onnx reads opset {MIN_OPSET} and "
            f"later (convert it with onnx.version_converter.convert_version(model, {MIN_OPSET}))"
        )
    return version


def _attrs(node) -> dict[str, Any]:
    import onnx

    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            out[a.name] = None  # control flow: refused by the op-type check
            continue
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v)
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def _op_key(node) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def _input_specs(
    inputs, given: Sequence[Sequence[int]] | Mapping[str, Sequence[int]] | None, fn: str
) -> tuple[list[tuple[int, ...]], list[np.dtype], bool]:
    """Shapes to trace at, dtypes, and whether the batch axis is dynamic."""
    wanted: list[Sequence[int] | None]
    if isinstance(given, Mapping):
        wanted = [given.get(i.name) for i in inputs]
    elif given is not None:
        if len(given) != len(inputs):
            raise ValueError(f"{fn}: {len(given)} input_shapes for {len(inputs)} model inputs")
        wanted = list(given)
    else:
        wanted = [None] * len(inputs)
    shapes, dtypes, dynamic = [], [], False
    for k, info in enumerate(inputs):
        t = info.type.tensor_type
        dims: list[int | None] = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in t.shape.dim
        ]
        want = wanted[k]
        if want is not None:
            fits = len(want) == len(dims) and all(
                d is None or d == w for d, w in zip(dims, want, strict=True)
            )
            if not fits:
                raise ValueError(f"{fn}: input {info.name!r} is declared {dims}, not {list(want)}")
            dims_: list[int | None] = [int(w) for w in want]
        else:
            dims_ = [TRACE_BATCH if (d is None and i == 0) else d for i, d in enumerate(dims)]
        missing = [i for i, d in enumerate(dims_) if d is None]
        if missing:
            raise ValueError(
                f"{fn}: input {info.name!r} has dynamic axes {missing} beyond the batch axis; "
                "pass input_shapes with their sizes"
            )
        dynamic |= bool(dims) and dims[0] is None
        shapes.append(tuple(d for d in dims_ if d is not None))
        dtypes.append(jax.dtypes.canonicalize_dtype(onnx_dtype(t.elem_type)))
    return shapes, dtypes, dynamic


def _consumers(graph) -> dict[str, int]:
    count: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            count[name] = count.get(name, 0) + 1
    for out in graph.output:
        count[out.name] = count.get(out.name, 0) + 1
    return count


def _unknown_ops(graph) -> list[Unsupported]:
    known = set(CONVERTERS) | set(FOLDERS) | set(_SOURCES)
    out = []
    for node in graph.node:
        key = _op_key(node)
        if key not in known:
            control = any(a.g.node or a.graphs for a in node.attribute)
            hint = (
                "control flow (subgraphs) is not supported; a jq graph is static"
                if control
                else "no converter; add one with jq_onnx.register_converter"
            )
            out.append(Unsupported(node.name or node.output[0], key, hint))
    return out


def _source(node: OnnxNode, ins: Sequence[Any]) -> np.ndarray:
    """The value of a ``Constant`` node, or the shape / size of a runtime tensor."""
    if node.op_type == "Constant":
        (key, value), *_ = node.attrs.items()
        if key in ("value_float", "value_int"):
            return np.asarray(value, np.float32 if key == "value_float" else np.int64)
        if key in ("value_floats", "value_ints"):
            return np.asarray(value, np.float32 if key == "value_floats" else np.int64)
        if key != "value":
            raise Unconvertible(f"Constant with attribute {key!r}")
        return np.asarray(value)
    shape = _shape_at(ins[0])
    if node.op_type == "Size":
        return np.asarray(int(np.prod(shape)), np.int64)
    start, end = node.attrs.get("start", 0), node.attrs.get("end", len(shape))
    return np.asarray(shape, np.int64)[start:end]


def _shape_at(x: Value, batch: int | None = None) -> tuple[int, ...]:
    """The shape of ``x``, with ``batch`` as the size of its batch axis when given."""
    if not isinstance(x, Tensor):
        return np.shape(x)
    shape = list(x.shape)
    if batch is not None and x.batch is not None:
        shape[x.batch] = batch
    return tuple(shape)


def convert_node(
    ctx: Context, node: OnnxNode, ins: list[Value | None], alts: dict[str, np.ndarray]
) -> list[Value]:
    """The outputs of one ONNX node: folded constants, or values of emitted jq nodes.

    ``alts`` holds the constants that follow the batch size: each one's value at batch
    ``TRACE_BATCH + 1`` (``Shape`` of a tensor with a batch axis, and what is folded from
    it, where the value differs). It is updated with this node's outputs; a converter that
    reads one pins the batch (a reshape target excepted: :func:`~jq_onnx._ops_shape.reshape_to`
    finds the batch axis itself).
    """
    alt_ins: list[Any] | None = None
    if node.op_type in _SOURCES:
        out: list[Value] = [_source(node, ins)]
        if node.op_type != "Constant" and ctx.dynamic_batch and isinstance(ins[0], Tensor):
            alt = _source(node, [np.broadcast_to(0, _shape_at(ins[0], TRACE_BATCH + 1))])
            alt_out = [alt]
        else:
            alt_out = []
    elif node.op_type in FOLDERS and not any(isinstance(v, Tensor) for v in ins):
        attrs = {**node.attrs, "_n_outputs": len(node.outputs)}
        out = list(FOLDERS[node.op_type](attrs, *ins))
        if any(name in alts for name in node.inputs):
            alt_ins = [alts.get(name, v) for name, v in zip(node.inputs, ins, strict=False)]
        alt_out = list(FOLDERS[node.op_type](attrs, *alt_ins)) if alt_ins else []
    else:
        if any(name in alts for name in node.inputs) and node.op_type not in _SHAPE_READERS:
            ctx.pin(f"{node.op_type} uses a size read from a tensor's shape")
        result = CONVERTERS[node.op_type](ctx, node, *ins)
        out = list(result) if isinstance(result, list) else [result]
        alt_out = []
    for name, value, alt in zip(node.outputs, out, alt_out, strict=False):
        if not np.array_equal(np.asarray(value), alt):
            alts[name] = alt
    return out


def from_onnx(
    model: Any,
    *,
    input_shapes: Sequence[Sequence[int]] | Mapping[str, Sequence[int]] | None = None,
) -> tuple[Graph, dict[str, dict[str, np.ndarray]]]:
    """Convert an ONNX model into a jq graph and its params.

    Args:
      model: an ``onnx.ModelProto`` or the path of an ``.onnx`` file (opset 13 or later).
      input_shapes: sizes for the model's dynamic axes beyond the batch axis (one shape per
        input, or ``{input name: shape}``); a dynamic axis 0 stays dynamic.

    Returns:
      ``(graph, params)``: ``graph.inputs`` are the ONNX input names (initializers excluded),
      ``graph.input_shapes`` has ``-1`` on a dynamic batch axis (unless a node pins it:
      ``graph.pinned_by``); params are NumPy float32 arrays (64-bit constants narrowed to 32
      bits, as JAX holds them).

    Raises:
      TypeError, FileNotFoundError: ``model`` is not a model or a file.
      ValueError: an opset below 13; dynamic axes beyond the batch without ``input_shapes``.
      UnsupportedOpError: nodes without a converter, or that their converter refused (all of
        them, each with a hint).

    Example:
      >>> import numpy as np, onnx, jq, jq_onnx
      >>> from onnx import helper, TensorProto as T
      >>> w = onnx.numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
      >>> g = helper.make_graph(
      ...     [helper.make_node("MatMul", ["x", "w"], ["y"]),
      ...      helper.make_node("Relu", ["y"], ["z"])],
      ...     "g", [helper.make_tensor_value_info("x", T.FLOAT, ["batch", 4])],
      ...     [helper.make_tensor_value_info("z", T.FLOAT, ["batch", 4])], initializer=[w])
      >>> graph, params = jq_onnx.from_onnx(helper.make_model(g))
      >>> [n.op for n in graph.nodes], graph.input_shapes
      (['linear', 'relu'], ((-1, 4),))
    """
    proto = load_model(model)
    _opset(proto, _FN)
    g = proto.graph
    import onnx

    consts: dict[str, Value] = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    shapes, dtypes, dynamic = _input_specs(inputs, input_shapes, _FN)
    unknown = _unknown_ops(g)
    if unknown:
        raise UnsupportedOpError(_FN, unknown)
    ctx = Context(dynamic, _consumers(g), [i.name for i in inputs])
    env: dict[str, Value] = dict(consts)
    for info, shape, dtype in zip(inputs, shapes, dtypes, strict=True):
        tensor = Tensor(info.name, shape, np.dtype(dtype), 0 if dynamic else None)
        env[info.name] = ctx.values[info.name] = tensor
    failed = _walk(ctx, g, env)
    if failed:
        raise UnsupportedOpError(_FN, failed)
    outputs = [ctx.tensor(env[o.name]).name for o in g.output]
    pinned = bool(ctx.pinned_by)
    declared = [(-1, *s[1:]) if dynamic and not pinned else s for s in shapes]
    nodes = live_nodes(ctx.nodes, outputs)
    graph = Graph(
        [i.name for i in inputs], nodes, outputs, input_shapes=declared, pinned_by=ctx.pinned_by
    )
    params = {n.name: dict(ctx.params[n.name]) for n in nodes if n.name in ctx.params}
    return graph, params


def live_nodes(nodes: Sequence[Node], outputs: Sequence[str]) -> list[Node]:
    """``nodes`` without those no output depends on (what fusions such as GELU's leave)."""
    needed = set(outputs)
    keep = []
    for node in reversed(nodes):
        if node.name in needed:
            keep.append(node)
            needed.update(node.inputs)
    return keep[::-1]


def _walk(ctx: Context, g, env: dict[str, Value]) -> list[Unsupported]:
    """Convert every node into ``env``; the nodes refused (those downstream of a refused one
    are skipped, not reported)."""
    failed: list[Unsupported] = []
    alts: dict[str, np.ndarray] = {}
    for proto_node in g.node:
        node = OnnxNode(
            proto_node.name or proto_node.output[0],
            _op_key(proto_node),
            _attrs(proto_node),
            tuple(proto_node.input),
            tuple(proto_node.output),
        )
        if any(name and name not in env for name in node.inputs):
            continue  # downstream of a refused node
        ins = [env[name] if name else None for name in node.inputs]
        while ins and ins[-1] is None:
            ins.pop()
        ctx.node = node
        try:
            outs = convert_node(ctx, node, ins, alts)
        except Unconvertible as e:
            failed.append(Unsupported(node.name, node.op_type, str(e)))
            continue
        for name, value in zip(node.outputs, outs, strict=False):
            if name:
                env[name] = value
    ctx.node = None
    return failed
