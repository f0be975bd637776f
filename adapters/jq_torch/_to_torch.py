"""``to_torch``: run a jq graph as a ``torch.nn.Module``.

The PTQ pipeline exports quantized graphs (with ``fake_quant`` nodes and replaced params) back
to PyTorch with it. Each jq op has a torch implementation in a table filled by
:func:`register_torch_op`, the mirror of jq's ``register_op``: a pipeline that adds a jq op
registers its torch twin the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from jq import Graph, Node
from jq.core import LayerInfo

from ._errors import Unsupported, UnsupportedOpError

TorchOp = Callable[..., torch.Tensor]
_TORCH_OPS: dict[str, TorchOp] = {}


def register_torch_op(name: str, *, override: bool = False) -> Callable[[TorchOp], TorchOp]:
    """Decorator adding ``fn(params, *inputs, **attrs) -> Tensor`` as the torch form of jq op
    ``name`` (same arguments as the JAX op; ``params`` holds torch tensors)."""

    def decorate(fn: TorchOp) -> TorchOp:
        if name in _TORCH_OPS and not override:
            raise ValueError(f"register_torch_op: op {name!r} is already registered")
        _TORCH_OPS[name] = fn
        return fn

    return decorate


class JQModule(torch.nn.Module):
    """A jq graph run with torch ops; params are buffers (``state_dict`` keys are the node
    names with ``.`` replaced by ``_``, then ``__`` and the param name).

    Self-contained: the graph, its params and the quantizers' records, nothing of the model it
    came from, so ``torch.save`` / ``torch.load`` and ``torch.export`` work on it. It runs the
    input shapes the graph accepts (:meth:`jq.Graph.accepts`: any batch size for graphs
    converted with a dynamic batch axis); other shapes are an error naming the expected ones
    and, for a graph whose model pins its batch size, the node that does.

    Saving and loading: ``torch.save(module, path)``, then ``JQModule.load(path)``. A plain
    ``torch.load(path)`` cannot return it: since torch 2.6 ``torch.load`` defaults to
    ``weights_only=True``, whose unpickler creates no object of a class outside torch's own
    list, and a module is one. Its error names the two ways that work, both exact for this
    module: ``torch.load(path, weights_only=False)`` (runs whatever the file says: only for
    files you trust), or allowlisting this one class, ``with
    torch.serialization.safe_globals([jq_torch.JQModule]): torch.load(path)``, which is what
    :meth:`load` does. That suffices because the pickled state holds only what the
    weights-only unpickler builds itself (the graph and the quantizers' records as tuples,
    lists, dicts, strings, numbers and tensors; see ``__getstate__``).

    Attributes:
      graph: the jq graph.
      quant_layers: the :class:`jq.core.LayerInfo` of every quantized tensor (empty for a float
        graph), without AUTO's analysis: what exporters read the kernels' grids from.
    """

    def __init__(
        self,
        graph: Graph,
        params: Mapping[str, Mapping[str, Any]],
        quant_layers: Sequence[LayerInfo] = (),
    ):
        super().__init__()
        missing = [
            Unsupported(n.name, n.op, "no torch implementation; add one with register_torch_op")
            for n in graph.nodes
            if n.op not in _TORCH_OPS
        ]
        if missing:
            raise UnsupportedOpError("to_torch", missing)
        self.graph = graph
        self.quant_layers = tuple(dataclasses.replace(q, analysis=None) for q in quant_layers)
        self._keys: dict[str, dict[str, str]] = {}
        for node in graph.nodes:
            for pname, value in params.get(node.name, {}).items():
                key = f"{node.name.replace('.', '_')}__{pname}"
                while hasattr(self, key):
                    key += "_"
                self.register_buffer(key, torch.from_numpy(np.array(value)))
                self._keys.setdefault(node.name, {})[pname] = key

    def _check_shapes(self, inputs: Sequence[torch.Tensor]) -> None:
        if len(inputs) != len(self.graph.inputs):
            raise TypeError(
                f"JQModule: expected {len(self.graph.inputs)} inputs, got {len(inputs)}"
            )
        if torch.jit.is_tracing():  # sizes are traced values there; the trace checks them
            return
        if not self.graph.accepts(tuple(x.shape) for x in inputs):
            why = f" ({self.graph.pinned_by})" if self.graph.pinned_by else ""
            raise ValueError(
                f"JQModule: inputs of shapes {[tuple(x.shape) for x in inputs]}, but this graph "
                f"serves {list(self.graph.input_shapes)} (-1: any size){why}"
            )

    def forward(self, *inputs: torch.Tensor) -> Any:
        self._check_shapes(inputs)
        graph = self.graph
        env = dict(zip(graph.inputs, inputs, strict=True))
        for node in graph.nodes:
            params = {p: getattr(self, k) for p, k in self._keys.get(node.name, {}).items()}
            args = [env[s] for s in node.inputs]
            env[node.name] = _TORCH_OPS[node.op](params, *args, **dict(node.attrs))
        outs = tuple(env[n] for n in graph.outputs)
        return outs[0] if len(outs) == 1 else outs

    def extra_repr(self) -> str:
        """``repr(module)``: the graph's size and inputs, and what is quantized how, e.g.
        ``JQModule(46 nodes, 11.2k params, inputs: x (-1, 3, 32, 32); quantized: 9 kernels
        8-bit symmetric, 12 activations 8-bit power_of_two)``."""
        g = self.graph
        n_params = sum(int(b.numel()) for b in self.buffers())
        shapes = ", ".join(
            f"{name} {tuple(s)}" if s is not None else name
            for name, s in zip(g.inputs, g.input_shapes or [None] * len(g.inputs), strict=True)
        )
        head = f"{len(g.nodes)} nodes, {_count(n_params)} params, inputs: {shapes}"
        if not self.quant_layers:
            return head + "; float (no quantizers)"
        parts = [
            _grids(f"{len(ls)} {label}", ls)
            for kind, label in (("weights", "kernels"), ("activation", "activations"))
            if (ls := [q for q in self.quant_layers if q.kind == kind])
        ]
        return f"{head}; quantized: {', '.join(parts)}"

    def __getstate__(self) -> dict[str, Any]:
        # The graph and the records as plain data, so that allowlisting JQModule alone lets
        # torch's weights-only unpickler rebuild the module (see the class docstring).
        state = super().__getstate__()
        state["graph"] = _graph_state(self.graph)
        state["quant_layers"] = [_layer_state(q) for q in self.quant_layers]
        state[_STATE_KEY] = _STATE_VERSION
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if state.pop(_STATE_KEY, None) is not None:  # else a file written before plain state
            state["graph"] = _graph_from_state(state["graph"])
            state["quant_layers"] = tuple(_layer_from_state(d) for d in state["quant_layers"])
        super().__setstate__(state)

    @classmethod
    def load(cls, f: Any, *, map_location: Any = None) -> JQModule:
        """The module ``torch.save(module, f)`` wrote, read with torch's weights-only
        unpickler (no code from the file runs) with this class allowlisted.

        Plain ``torch.load(f)`` refuses the file (torch >= 2.6; see the class docstring);
        ``torch.load(f, weights_only=False)`` also reads it, for files you trust.

        Args:
          f: a path or a binary file object, as for ``torch.load``.
          map_location: as for ``torch.load`` (e.g. ``"cpu"``).

        Returns:
          The :class:`JQModule`.

        Raises:
          pickle.UnpicklingError: the file holds other classes (torch's message names them).
          TypeError: the file holds something other than a :class:`JQModule`.

        Example:
          >>> import io, torch, jq, jq_torch
          >>> graph = jq.Graph("x", [jq.Node("y", "relu", ["x"])], "y")
          >>> buf = io.BytesIO()
          >>> torch.save(jq_torch.to_torch(graph, {}), buf)
          >>> _ = buf.seek(0)
          >>> jq_torch.JQModule.load(buf).graph == graph
          True
        """
        # torch.load takes no allowlist argument; the context manager adds JQModule to torch's
        # process-wide list for the duration of this call only.
        with torch.serialization.safe_globals([cls]):
            module = torch.load(f, map_location=map_location, weights_only=True)
        if not isinstance(module, JQModule):
            raise TypeError(
                f"JQModule.load: the file holds a {type(module).__name__}, not a JQModule"
            )
        return module

    def node_params(self, name: str) -> dict[str, torch.Tensor]:
        """The params of node ``name`` (``{}`` for a node without params)."""
        return {p: getattr(self, k) for p, k in self._keys.get(name, {}).items()}

    def save_torchscript(self, path: str, example: Sequence[Any]) -> None:
        """Write ``torch.jit.trace`` of this module, traced on the NumPy arrays ``example``, to
        ``path`` (its fake-quantizers are torch ops already). Used by
        ``jq.exporter.pytorch_export_model``, which keeps ``jq`` free of torch imports."""
        args = tuple(torch.from_numpy(a) for a in example)
        with torch.no_grad():
            traced = torch.jit.trace(self, args, check_trace=False)
        torch.jit.save(traced, path)


# --- the pickled state: plain data only ---------------------------------------------------
# torch's weights-only unpickler builds tuples, lists, dicts, strings, numbers, None and
# tensors without any allowlisting; everything else in the state of a JQModule (the Graph, its
# Nodes, LayerInfo, NumPy values) is written in those terms. Arrays (NumPy, JAX) and NumPy
# scalars become tensors in a one-key dict, and every dict of the data in a {"dict": items}
# one, so a dict in the state is always one of those two tags. A value of any other type is
# left as it is: pickle still writes it (weights_only=False reads it back; the weights-only
# unpickler names its class).

_STATE_KEY = "_jq_state"
_STATE_VERSION = 1
_PLAIN = (type(None), bool, int, float, str)


def _plain(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if type(value) in (tuple, list):
        return type(value)(_plain(v) for v in value)
    if type(value) is dict:
        return {"dict": [(_plain(k), _plain(v)) for k, v in value.items()]}
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.generic) or hasattr(value, "__array__"):
        try:
            tensor = torch.from_numpy(np.array(value))
        except TypeError:  # a dtype torch lacks: pickled as it is
            return value
        return {"scalar" if isinstance(value, np.generic) else "array": tensor}
    return value


def _unplain(value: Any) -> Any:
    if type(value) in (tuple, list):
        return type(value)(_unplain(v) for v in value)
    if type(value) is dict:
        if "dict" in value:
            return {_unplain(k): _unplain(v) for k, v in value["dict"]}
        if "scalar" in value:
            return value["scalar"].cpu().numpy()[()]
        return value["array"].cpu().numpy()
    return value


def _graph_state(graph: Graph) -> dict[str, Any]:
    nodes = [
        (n.name, n.op, n.inputs, _plain(n.attrs), n.shape, n.param_shapes) for n in graph.nodes
    ]
    return {
        "inputs": graph.inputs,
        "nodes": nodes,
        "outputs": graph.outputs,
        "input_shapes": graph.input_shapes,
        "pinned_by": graph.pinned_by,
    }


def _graph_from_state(state: dict[str, Any]) -> Graph:
    nodes = [
        Node(name, op, inputs, _unplain(attrs), shape, param_shapes)
        for name, op, inputs, attrs, shape, param_shapes in state["nodes"]
    ]
    return Graph(
        state["inputs"], nodes, state["outputs"], state["input_shapes"], state["pinned_by"]
    )


def _layer_state(layer: LayerInfo) -> dict[str, Any]:
    return {f.name: _plain(getattr(layer, f.name)) for f in dataclasses.fields(layer)}


def _layer_from_state(state: dict[str, Any]) -> LayerInfo:
    return LayerInfo(**{k: _unplain(v) for k, v in state.items()})


def _count(n: int) -> str:
    """``1234567`` -> ``"1.23M"``."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return str(n)


def _grids(label: str, layers: Sequence[LayerInfo]) -> str:
    """``"9 kernels 8-bit symmetric"``, or with several grids ``"12 activations (9 at 8-bit
    power_of_two, 3 at 16-bit power_of_two)"``."""
    keys = [(q.n_bits, q.method) for q in layers]
    kinds = list(dict.fromkeys(keys))
    if len(kinds) == 1:
        return f"{label} {kinds[0][0]}-bit {kinds[0][1]}"
    return f"{label} ({', '.join(f'{keys.count(k)} at {k[0]}-bit {k[1]}' for k in kinds)})"


def to_torch(
    graph: Graph,
    params: Mapping[str, Mapping[str, Any]],
    quant_layers: Sequence[LayerInfo] = (),
) -> JQModule:
    """A ``torch.nn.Module`` computing ``jq.apply(graph, params, *inputs)`` with torch ops.

    Args:
      graph: a jq graph (e.g. from ``from_torch``, possibly rewritten or quantized).
      params: its params pytree (JAX or NumPy arrays); copied into buffers.
      quant_layers: for a quantized graph, ``QuantizationInfo.layers`` (kept on the module for
        exporters; see :class:`JQModule`).

    Returns:
      A :class:`JQModule` in eval mode; call it with torch tensors.

    Raises:
      UnsupportedOpError: ops without a torch implementation (all listed).
    """
    return JQModule(graph, params, quant_layers).eval()


# --- the torch op table ------------------------------------------------------------------

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@register_torch_op("constant")
def _constant(params):
    return params["value"]


@register_torch_op("conv")
def _conv(params, x, *, stride, padding, dilation, groups):
    w = params["weight"]
    nd = w.ndim - 2
    if all(lo == hi for lo, hi in padding):
        pad = tuple(lo for lo, _ in padding)
    else:  # asymmetric: pad explicitly (F.pad takes the last dim first)
        x = F.pad(x, [p for lo_hi in reversed(padding) for p in lo_hi])
        pad = 0
    return _CONV[nd](x, w, params.get("bias"), stride, pad, dilation, groups)


@register_torch_op("conv_transpose")
def _conv_transpose(params, x, *, stride, padding, output_padding, dilation, groups):
    w = params["weight"]
    fn = _CONV_T[w.ndim - 2]
    return fn(x, w, params.get("bias"), stride, padding, output_padding, groups, dilation)


@register_torch_op("linear")
def _linear(params, x):
    return F.linear(x, params["weight"], params.get("bias"))


@register_torch_op("matmul")
def _matmul(params, a, b):
    return torch.matmul(a, b)


@register_torch_op("embedding")
def _embedding(params, indices):
    return F.embedding(indices, params["weight"])


@register_torch_op("batch_norm")
def _batch_norm(params, x, *, eps):
    p = params
    return F.batch_norm(
        x, p["running_mean"], p["running_var"], p.get("weight"), p.get("bias"), False, 0.0, eps
    )


@register_torch_op("layer_norm")
def _layer_norm(params, x, *, normalized_shape, eps):
    return F.layer_norm(x, normalized_shape, params.get("weight"), params.get("bias"), eps)


@register_torch_op("group_norm")
def _group_norm(params, x, *, num_groups, eps):
    return F.group_norm(x, num_groups, params.get("weight"), params.get("bias"), eps)


for _name, _fn in (
    ("relu", F.relu),
    ("relu6", F.relu6),
    ("silu", F.silu),
    ("hardswish", F.hardswish),
    ("hardsigmoid", F.hardsigmoid),
    ("sigmoid", torch.sigmoid),
    ("tanh", torch.tanh),
):
    register_torch_op(_name)(lambda params, x, _fn=_fn: _fn(x))
del _name, _fn


@register_torch_op("hardtanh")
def _hardtanh(params, x, *, min_val, max_val):
    return F.hardtanh(x, min_val, max_val)


@register_torch_op("leaky_relu")
def _leaky_relu(params, x, *, negative_slope):
    return F.leaky_relu(x, negative_slope)


@register_torch_op("gelu")
def _gelu(params, x, *, approximate="none"):
    return F.gelu(x, approximate=approximate)


@register_torch_op("softmax")
def _softmax(params, x, *, axis):
    return torch.softmax(x, axis)


@register_torch_op("max_pool")
def _max_pool(params, x, *, kernel_size, stride, padding, dilation, ceil_mode):
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(kernel_size)]
    return fn(x, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode)


@register_torch_op("avg_pool")
def _avg_pool(
    params, x, *, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
):
    nd = len(kernel_size)
    if nd == 1:
        if divisor_override:
            raise NotImplementedError("to_torch: avg_pool 1-d with divisor_override")
        return F.avg_pool1d(x, kernel_size, stride, padding, ceil_mode, count_include_pad)
    fn = {2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    return fn(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


@register_torch_op("adaptive_avg_pool")
def _adaptive_avg_pool(params, x, *, output_size):
    fn = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
    return fn[len(output_size)](x, output_size)


def _binary(fn):
    def op(params, x, y=None, *, scalar=None, reverse=False):
        if y is None:
            return fn(scalar, x) if reverse else fn(x, scalar)
        return fn(x, y)

    return op


for _bin_name, _bin_fn in (
    ("add", lambda a, b: a + b),
    ("sub", lambda a, b: a - b),
    ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b),
):
    register_torch_op(_bin_name)(_binary(_bin_fn))
del _bin_name, _bin_fn


@register_torch_op("pad")
def _pad(params, x, *, padding, value=0.0):
    flat = [int(p) for lo_hi in reversed(padding) for p in lo_hi]
    return F.pad(x, flat, mode="constant", value=float(value))


@register_torch_op("cat")
def _cat(params, *xs, axis):
    return torch.cat(xs, axis)


@register_torch_op("reshape")
def _reshape(params, x, *, shape):
    return x.reshape(shape)


@register_torch_op("permute")
def _permute(params, x, *, dims):
    return x.permute(dims)


@register_torch_op("expand")
def _expand(params, x, like=None, *, shape, like_axes=()):
    target = list(shape)  # -1 keeps x's size, as in torch
    for i, j in like_axes:
        target[i] = like.shape[j]
    return x.expand(target)


@register_torch_op("slice")
def _slice(params, x, *, axis, start, stop, step):
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop, step)
    return x[tuple(index)]


@register_torch_op("select")
def _select(params, x, *, axis, index):
    return x.select(axis, index)


@register_torch_op("mean")
def _mean(params, x, *, axis, keepdims):
    return x.mean(dim=axis, keepdim=keepdims)


@register_torch_op("cast")
def _cast(params, x, *, dtype):
    return x.to(getattr(torch, dtype))


@register_torch_op("scaled_dot_product_attention")
def _sdpa(params, q, k, v, mask=None, *, is_causal=False, scale=None):
    return F.scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal, scale=scale)


@register_torch_op("fake_quant")
def _fake_quant(params, x):
    """Torch twin of jq's ``fake_quant``: ``torch.fake_quantize_*``'s arithmetic (float32
    reciprocal of the scale, round half to even), zero point folded into the level bounds."""
    scale = params["scale"]
    return torch.clamp(torch.round(x * (1.0 / scale)), params["q_min"], params["q_max"]) * scale
