"""``from_torch``: a PyTorch module into jq's graph form.

Why ``torch.export`` (and not ``torch.fx.symbolic_trace``): export traces with fake tensors
through the dispatcher, so it sees every op a forward really runs, whatever Python it is written
in (functional calls, ``x + y``, methods, ``nn.MultiheadAttention``'s internals), records each
node's output shape and module path (``nn_module_stack``) and lifts parameters and buffers with
their fully-qualified names. ``symbolic_trace`` works on Python source: it records
``torch.nn.functional`` calls and tensor methods unnormalized (many spellings per op), has no
shapes, and silently bakes data-dependent branches in or fails on them. Export instead refuses
data-dependent control flow with a clear error, which we wrap.

We keep the high-level ATen ops export records (``conv2d``, ``linear``, ``layer_norm``,
``scaled_dot_product_attention``) instead of lowering them to core ATen (``addmm``,
``native_layer_norm`` pieces). In-place ops convert as their out-of-place twins where nothing
else can see the mutation (``_inplace.py``); otherwise ``run_decompositions({})`` functionalizes
the program first (with an empty table it lowers nothing), which costs a second trace of the
model.

The converters live in ``_aten.py``, one per ATen op family, registered with
:func:`register_converter`; an op without one is reported (all of them, at once) in an
:class:`UnsupportedOpError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import jax
import numpy as np
import torch
from torch import fx

from jq import Graph, Node, apply
from jq._src.names import Names

from ._batch import SymSize, dynamic_example, hint, pin_reason, symbolic_axes
from ._errors import Unsupported, UnsupportedOpError
from ._export import export_dynamic, export_static
from ._inplace import inplace_twin, needs_functionalization

Converter = Callable[..., Any]
_CONVERTERS: dict[Any, Converter] = {}

# Hints for ops we know we do not convert; the default hint says how to add a converter.
_HINTS = {
    "aten.index.Tensor": "advanced (tensor) indexing is not supported; use slicing or "
    "torch.index_select on constant indices",
    "aten._native_batch_norm_legit_functional.default": "batch norm in training mode; call "
    "model.eval() before converting",
    "higher_order.cond": "torch.cond control flow is not supported; a jq graph is static",
    "aten.item.default": "reading tensor values in Python (.item()) is data-dependent",
}


def _hint(op: str) -> str:
    """Why ``op`` has no converter: a known reason (``_HINTS``, the coverage table's refused
    ops) or how to add one."""
    from ._coverage import REFUSED  # the table builds recipes: import it only when needed

    return (
        _HINTS.get(op)
        or REFUSED.get(op)
        or (
            "no converter; add one with @jq_torch.register_converter (and a jq op with jq "
            "register_op if the vocabulary lacks it)"
        )
    )


# Ops whose value depends on their first argument's shape and dtype only: with static shapes
# they are evaluated at conversion even when that argument is computed from the inputs.
_SHAPE_ONLY = frozenset(
    {
        torch.ops.aten.new_zeros,
        torch.ops.aten.new_ones,
        torch.ops.aten.new_full,
        torch.ops.aten.new_empty,
        torch.ops.aten.zeros_like,
        torch.ops.aten.ones_like,
        torch.ops.aten.full_like,
        torch.ops.aten.empty_like,
    }
)


class Unconvertible(Exception):
    """Raised by a converter for arguments it cannot handle; the message is the hint."""


class _Skip(Exception):
    """An input of this node failed to convert (already reported)."""


_FAILED = object()


def register_converter(*targets: Any, override: bool = False) -> Callable[[Converter], Converter]:
    """Decorator registering ``fn(ctx, **args) -> value`` for ATen ops (``torch.ops.aten.relu``
    covers every overload; ``torch.ops.aten.add.Tensor`` one overload; ``operator.getitem``).

    ``args`` are the op's schema arguments by name, defaults filled in. ``ctx`` (a
    :class:`ConvertContext`) turns fx arguments into jq values and emits jq nodes. The
    returned value is a jq value name, a tuple of them (multi-output ops), or ``None``.
    """

    def decorate(fn: Converter) -> Converter:
        for t in targets:
            if t in _CONVERTERS and not override:
                raise ValueError(f"register_converter: {t} already has a converter")
            _CONVERTERS[t] = fn
        return fn

    return decorate


def _lookup(target: Any) -> Converter | None:
    fn = _CONVERTERS.get(target)
    if fn is None and isinstance(target, torch._ops.OpOverload) and not target._schema.is_mutable:
        fn = _CONVERTERS.get(target.overloadpacket)  # not for out= / in-place overloads
    twin = inplace_twin(target)  # only met where needs_functionalization said no
    return _lookup(twin) if fn is None and twin is not None else fn


def _op_name(target: Any) -> str:
    """``"aten.conv2d.default"``, ``"higher_order.cond"``, ``"getitem"``."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    if isinstance(target, torch._ops.HigherOrderOperator):
        return f"higher_order.{target.name()}"
    return getattr(target, "__name__", str(target))


def _short_name(target: Any) -> str:
    """``"conv2d"`` for ``aten.conv2d.default``: used to name unconverted nodes."""
    parts = _op_name(target).split(".")
    return parts[1] if len(parts) > 2 else parts[-1]


def _bind(target: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Schema arguments by name, with defaults."""
    out = {}
    for i, a in enumerate(target._schema.arguments):
        if i < len(args) and not a.kwarg_only:
            out[a.name] = args[i]
        elif a.name in kwargs:
            out[a.name] = kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
        else:
            out[a.name] = None
    return out


def _where(node: fx.Node) -> str:
    trace = node.meta.get("stack_trace") or ""
    lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-2:]) if lines else ""


class ConvertContext:
    """State of one conversion, handed to converters."""

    def __init__(self, ep: torch.export.ExportedProgram, model: torch.nn.Module):
        sig = ep.graph_signature
        self._fqn: dict[str, str] = {
            **sig.inputs_to_parameters,
            **sig.inputs_to_buffers,
            **sig.inputs_to_lifted_tensor_constants,
        }
        self._tensors = {**ep.state_dict, **ep.constants}
        self._modules = dict(model.named_modules())
        self.nodes: list[Node] = []
        self.params: dict[str, dict[str, torch.Tensor]] = {}
        self.torch_shapes: dict[str, tuple[int | None, ...]] = {}
        self._names = Names(sig.user_inputs)
        self._env: dict[fx.Node, Any] = {}
        self._consts: dict[fx.Node, str] = {}
        self._folded: dict[fx.Node, tuple[Any, str, bool]] = {}
        self.current: fx.Node | None = None

    # -- arguments ------------------------------------------------------------------------

    def _const(self, arg: fx.Node) -> tuple[torch.Tensor, str, bool] | None:
        """``(tensor, name, is_fqn)`` if ``arg`` is a parameter, buffer, lifted constant or a
        value computed from those alone (folded at conversion); ``None`` otherwise."""
        if arg in self._folded:
            return self._folded[arg]
        if arg.op == "placeholder" and arg.name in self._fqn:
            fqn = self._fqn[arg.name]
            return self._tensors[fqn], fqn, True
        return None

    def value(self, arg: Any) -> Any:
        """The jq value name of an fx tensor argument (lists map elementwise); parameters and
        constants become ``constant`` nodes."""
        if isinstance(arg, (list, tuple)):
            return [self.value(a) for a in arg]
        if not isinstance(arg, fx.Node):
            return arg
        const = self._const(arg)
        if const is not None:
            return self._constant(arg, const)
        v = self._env[arg]
        if v is _FAILED:
            raise _Skip
        return v

    def is_tensor(self, arg: Any) -> bool:
        return isinstance(arg, fx.Node) and not isinstance(self._env.get(arg), SymSize)

    def env_items(self) -> list[tuple[fx.Node, Any]]:
        """``(fx node, jq value)`` of every node converted so far."""
        return list(self._env.items())

    def param(self, arg: fx.Node, what: str) -> tuple[torch.Tensor, str | None]:
        """``(tensor, fully-qualified name or None)`` of a parameter/buffer/constant argument."""
        const = self._const(arg) if isinstance(arg, fx.Node) else None
        if const is None or not isinstance(const[0], torch.Tensor):
            raise Unconvertible(
                f"{what} must be a parameter, buffer or constant of the model, not computed "
                "from the inputs"
            )
        tensor, name, is_fqn = const
        return tensor, name if is_fqn else None

    def shape(self, arg: fx.Node | None = None) -> tuple[int, ...]:
        """Shape of an fx value (default: the node being converted); a symbolic (batch) size
        as the example's value: see :meth:`sym_axes`."""
        if arg is not None and self._env.get(arg) is _FAILED:
            raise _Skip  # its converter failed (reported); its size may be unknown (nonzero)
        val = (arg if arg is not None else self._node()).meta["val"]
        return tuple(hint(d) for d in val.shape)

    def sym_axes(self, arg: fx.Node | None = None) -> tuple[int, ...]:
        """Axes of an fx value (default: the node being converted) whose size is symbolic
        (involves the dynamic batch size): converters keep those out of static attributes."""
        return symbolic_axes((arg if arg is not None else self._node()).meta["val"])

    def static_axis(self, arg: fx.Node, axis: int, what: str) -> None:
        """Raise :class:`Unconvertible` when ``axis`` of ``arg`` has a symbolic size (``what``
        would bake the example's batch size into the graph)."""
        if axis in self.sym_axes(arg):
            raise Unconvertible(f"{what} on the batch axis depends on the batch size")

    def _node(self) -> fx.Node:
        """The node being converted (:meth:`run` sets it before calling its converter)."""
        return cast(fx.Node, self.current)

    # -- emitting -------------------------------------------------------------------------

    def _base_name(self, op: str, fqn: str | None) -> str:
        if fqn is not None:  # a layer: name it after its weight's owner
            head, _, last = fqn.rpartition(".")
            if last.endswith("_weight") and last != "_weight":
                return f"{head}.{last[: -len('_weight')]}" if head else last[: -len("_weight")]
            return head or last
        stack = self._node().meta.get("nn_module_stack") or {}
        path = next(reversed(stack.values()))[0] if stack else ""
        module = self._modules.get(path)
        if path and module is not None and not any(True for _ in module.children()):
            return path  # a leaf module such as nn.ReLU
        return f"{path}.{op}" if path else op

    def emit(
        self,
        op: str,
        inputs: Sequence[str],
        attrs: dict[str, Any] | None = None,
        params: dict[str, fx.Node | None] | None = None,
    ) -> str:
        """Append a jq node; ``params`` maps param names to parameter/buffer fx arguments
        (``None`` entries are skipped). Returns the node's name."""
        tensors, fqn = {}, None
        for pname, arg in (params or {}).items():
            if arg is None:
                continue
            t, f = self.param(arg, f"{op} {pname}")
            tensors[pname] = t
            fqn = fqn or f
        return self.emit_tensors(op, inputs, attrs, tensors, fqn)

    def emit_tensors(
        self,
        op: str,
        inputs: Sequence[str],
        attrs: dict[str, Any] | None,
        tensors: dict[str, torch.Tensor],
        fqn: str | None,
    ) -> str:
        """:meth:`emit` with params given as tensors (e.g. a transposed weight), the node
        named after ``fqn`` (the fully-qualified name of the layer's weight) when given."""
        name = self._names.new(self._base_name(op, fqn))
        self.nodes.append(Node(name, op, tuple(inputs), attrs or {}))
        if tensors:
            self.params[name] = tensors
        return name

    def _constant(self, arg: fx.Node, const: tuple[torch.Tensor, str, bool]) -> str:
        if arg not in self._consts:
            tensor, base, _ = const
            if not isinstance(tensor, torch.Tensor):
                raise Unconvertible(f"a constant {type(tensor).__name__} used as a tensor")
            name = self._names.new(base)
            self.nodes.append(Node(name, "constant"))
            self.params[name] = {"value": tensor}
            self._consts[arg] = name
        return self._consts[arg]

    def _fold(self, node: fx.Node) -> bool:
        """Evaluate ``node`` now if it reads only parameters and constants (e.g. a mask built
        with ``torch.ones(...).tril()``, or ``self.w.t()``), or only the static shape of
        values computed from the inputs (``x.new_zeros(h, w)``: Swin's window mask)."""
        packet = getattr(node.target, "overloadpacket", node.target)
        if torch.Tag.nondeterministic_seeded in getattr(node.target, "tags", ()):
            return False  # a random op: a constant would freeze one draw (refused instead)
        shape_only = packet in _SHAPE_ONLY

        def const(a: fx.Node) -> Any:
            c = self._const(a)
            if c is not None:
                return c[0]
            val = a.meta.get("val")
            if shape_only and a is node.args[0] and isinstance(val, torch.Tensor):
                if symbolic_axes(node.meta["val"]):
                    raise _Skip  # the output's size involves the batch: not a constant
                # new_zeros reads only the dtype, zeros_like the shape (static, as the output's)
                return torch.zeros([hint(d) for d in val.shape], dtype=val.dtype)
            raise _Skip

        try:
            args = fx.node.map_arg(node.args, const)
            kwargs = fx.node.map_arg(node.kwargs, const)
        except _Skip:
            return False
        try:
            with torch.no_grad():
                value = cast(Callable[..., Any], node.target)(*args, **kwargs)
        except Exception:  # not evaluable eagerly: convert it like any other node
            return False
        self._folded[node] = (value, self._base_name(_short_name(node.target), None), False)
        return True

    # -- driving --------------------------------------------------------------------------

    def run(self, ep: torch.export.ExportedProgram) -> list[Unsupported]:
        problems: list[Unsupported] = []
        user_inputs = set(ep.graph_signature.user_inputs)
        for node in ep.graph.nodes:
            if node.op == "placeholder" and node.name in user_inputs:
                self._env[node] = node.name
            if node.op != "call_function":
                continue
            self.current = node
            if self._fold(node):
                continue
            fn = _lookup(node.target)
            try:
                if fn is None:
                    raise Unconvertible(_hint(_op_name(node.target)))
                if hasattr(node.target, "_schema"):
                    out = fn(self, **_bind(node.target, node.args, node.kwargs))
                else:
                    out = fn(self, *node.args, **node.kwargs)
            except _Skip:
                out = _FAILED
            except Unconvertible as e:
                base = self._base_name(_short_name(node.target), None)
                problems.append(Unsupported(base, _op_name(node.target), str(e), _where(node)))
                out = _FAILED
            self._env[node] = out
            if isinstance(out, str) and self.nodes and self.nodes[-1].name == out:
                val = node.meta.get("val")
                if isinstance(val, torch.Tensor):
                    sym = symbolic_axes(val)
                    self.torch_shapes[out] = tuple(
                        None if i in sym else int(d) for i, d in enumerate(val.shape)
                    )
        return problems


def _prune(nodes: list[Node], outputs: Sequence[str]) -> list[Node]:
    """Drop nodes whose values no output needs (e.g. unused pieces of a split)."""
    live = set(outputs)
    kept = []
    for node in reversed(nodes):
        if node.name in live:
            kept.append(node)
            live.update(node.inputs)
    return kept[::-1]


def _to_jax(t: torch.Tensor) -> jax.Array:
    # device_put, not jnp.asarray: that compiles a small program per shape (JAX 0.10).
    return jax.device_put(t.detach().cpu().contiguous().numpy())


def _convert_exported(
    ep: torch.export.ExportedProgram, model: torch.nn.Module, args: tuple, *, dynamic: bool
) -> _Converted:
    """:func:`_convert` of an exported program: as it is where its in-place ops convert as
    out-of-place ones (``_inplace.py``), else functionalized by ``run_decompositions({})`` (a
    second trace of the model), which also serves where the first try meets an op without a
    converter (the functionalized program spells some ops differently, e.g. ``aten.to.device``
    as ``_to_copy``); the functionalized program's errors are the ones reported."""
    if not needs_functionalization(ep):
        try:
            return _convert(ep, model, args, dynamic=dynamic)
        except UnsupportedOpError:
            pass
    return _convert(ep.run_decompositions({}), model, args, dynamic=dynamic)


def is_module(obj) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module`` (lets torch-free code check without torch)."""
    return isinstance(obj, torch.nn.Module)


def _example_args(model: Any, example_inputs: Any) -> tuple[torch.Tensor, ...]:
    """``example_inputs`` as a tuple of tensors, after checking both arguments of
    :func:`from_torch`."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"from_torch: model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(example_inputs, (torch.Tensor, np.ndarray)):
        example_inputs = (example_inputs,)
    args = tuple(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in example_inputs)
    if not all(isinstance(a, torch.Tensor) for a in args):
        raise TypeError(
            "from_torch: example_inputs must be a tensor or a sequence of tensors, got "
            f"{[type(a).__name__ for a in args]}"
        )
    mode_dependent = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.dropout._DropoutNd)
    if any(m.training and isinstance(m, mode_dependent) for m in model.modules()):
        raise ValueError(
            f"from_torch: {type(model).__name__} is in training mode; call model.eval() first "
            "(batch norm and dropout convert in their inference form)"
        )
    return args


def _user_outputs(
    ep: torch.export.ExportedProgram, ctx: ConvertContext, problems: list[Unsupported]
) -> list[Any]:
    """The jq values of the model's outputs (not buffer mutations); outputs that are not
    tensors are added to ``problems``, those of failed nodes (already reported) left out."""
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    user_outputs = set(ep.graph_signature.user_outputs)
    outputs = []
    for i, arg in enumerate(a for a in out_node.args[0] if getattr(a, "name", a) in user_outputs):
        try:
            v = ctx.value(arg)
        except _Skip:
            continue
        if not isinstance(v, str):
            problems.append(Unsupported(f"output {i}", "output", "outputs must be tensors"))
        outputs.append(v)
    return outputs


def from_torch(
    model: torch.nn.Module,
    example_inputs: torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray],
) -> tuple[Graph, dict[str, dict[str, jax.Array]]]:
    """Convert a PyTorch module (in eval mode) into a jq graph and params.

    Args:
      model: the ``torch.nn.Module``; must be in eval mode (``model.eval()``).
      example_inputs: a tensor or a sequence of tensors (NumPy arrays are converted), as
        ``model(*example_inputs)`` takes
        them. The graph runs inputs of these shapes, with any size on axis 0 (a dynamic
        batch, ``-1`` in ``graph.input_shapes``) where ``torch.export`` can keep it symbolic;
        where the model pins it, ``graph.pinned_by`` names the node (and errors quote it).

    Returns:
      ``(graph, params)``: the :class:`jq.Graph` (nodes named after the modules they come
      from; outputs flattened) and ``{node: {param: jax.Array}}`` in PyTorch layouts.

    Raises:
      TypeError: ``model`` or ``example_inputs`` of the wrong type.
      ValueError: the model is in training mode.
      UnsupportedOpError: ops without a converter (all of them, each with node name and hint).
      DynamicControlFlowError: data-dependent control flow.
      ExportError: ``torch.export`` failed for another reason (its message included).

    Example:
      >>> import jax
      >>> import numpy as np
      >>> import torch
      >>> import jq, jq_torch
      >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
      >>> x = torch.randn(2, 4)
      >>> graph, params = jq_torch.from_torch(model, x)
      >>> print(graph)
      name   op      inputs  output shape  params
      -----  ------  ------  ------------  ------
      input  input           (-1, 4)
      0      linear  input   (2, 3)            15
      1      relu    0       (2, 3)
      2 nodes, 15 params, outputs: 1
      >>> y = jax.jit(jq.apply, static_argnums=0)(graph, params, x.numpy())
      >>> with torch.no_grad():
      ...     want = model(x).numpy()
      >>> bool(np.allclose(y, want, atol=1e-6))
      True
    """
    args = _example_args(model, example_inputs)
    converted, pinned_by = _convert_dynamic(model, args)
    if converted is None:
        ep = export_static(model, args)
        converted = _convert_exported(ep, model, args, dynamic=False)
        pinned_by = _name_pinning_node(converted, pinned_by)
    graph, params, ctx = converted
    graph = graph.replace(pinned_by=pinned_by)
    return _record_shapes(graph, params, args, ctx.torch_shapes), params


_Converted = tuple[Graph, dict, ConvertContext]


def _convert(
    ep: torch.export.ExportedProgram, model: torch.nn.Module, args: tuple, *, dynamic: bool
) -> _Converted:
    """The graph and params of an exported program (``input_shapes`` with ``-1`` on axis 0
    when ``dynamic``).

    Raises:
      UnsupportedOpError: ops without a converter (all listed).
    """
    ctx = ConvertContext(ep, model)
    problems = ctx.run(ep)
    outputs = _user_outputs(ep, ctx, problems)
    if problems:
        raise UnsupportedOpError(f"from_torch({type(model).__name__})", problems)
    inputs = tuple(ep.graph_signature.user_inputs)
    nodes = _prune(ctx.nodes, outputs)
    params = {
        n.name: {k: _to_jax(t) for k, t in ctx.params[n.name].items()}
        for n in nodes
        if n.name in ctx.params
    }
    shapes = [(-1, *a.shape[1:]) if dynamic else tuple(a.shape) for a in args]
    return Graph(inputs, tuple(nodes), tuple(outputs), input_shapes=shapes), params, ctx


def _convert_dynamic(model: torch.nn.Module, args: tuple) -> tuple[_Converted | None, str]:
    """The conversion with a dynamic batch axis, or ``(None, why not)``: then the caller
    converts a static export (whose errors are the ones to report)."""
    example = dynamic_example(args)
    if example is None:
        return None, "the inputs do not share a leading batch axis"
    try:
        ep = export_dynamic(model, example)
        return _convert_exported(ep, model, args, dynamic=True), ""
    except UnsupportedOpError as e:
        where = "; ".join(f"node {u.node!r} ({u.op}): {u.hint}" for u in e.ops[:3])
        return None, f"with a dynamic batch axis, {where}"
    except Exception as e:  # export or functionalization refused the symbolic batch
        if "Constraints violated" in str(e) or "specialized it to be a constant" in str(e):
            return None, pin_reason(model, example)
        return None, f"torch.export with a dynamic batch axis failed ({type(e).__name__})"


def _name_pinning_node(converted: _Converted, reason: str) -> str:
    """``reason`` prefixed with the jq node converted from the source line it quotes."""
    _, _, ctx = converted
    line = reason.split("`")[1] if reason.count("`") >= 2 else None
    if line is None:
        return f"the batch size is fixed: {reason}"
    for fx_node, value in ctx.env_items():
        trace = (fx_node.meta.get("stack_trace") or "").strip().splitlines()
        if isinstance(value, str) and trace and trace[-1].strip() == line:
            return f"node {value!r} fixes the batch size: {reason}"
    return f"the batch size is fixed: {reason}"


def _record_shapes(graph: Graph, params, args, torch_shapes) -> Graph:
    """Trace the graph abstractly (``jax.eval_shape``) to record every node's output shape,
    and check it against the shape torch recorded: a mismatch is a converter bug."""
    specs = [
        jax.ShapeDtypeStruct(
            tuple(a.shape), jax.dtypes.canonicalize_dtype(a.detach().reshape(-1)[:0].numpy().dtype)
        )
        for a in args
    ]
    names = tuple(n.name for n in graph.nodes)
    _, acts = jax.eval_shape(lambda p, *xs: apply(graph, p, *xs, capture=names), params, *specs)
    nodes = []
    for node in graph.nodes:
        shape = acts[node.name].shape
        expected = torch_shapes.get(node.name)
        if expected is not None and (
            len(expected) != len(shape)
            or any(e is not None and e != d for e, d in zip(expected, shape, strict=True))
        ):
            raise RuntimeError(
                f"jq_torch internal error: node {node.name!r} ({node.op}) has shape {shape} in "
                f"JAX but {expected} in torch; please report it"
            )
        pshapes = {k: v.shape for k, v in params.get(node.name, {}).items()}
        nodes.append(node.replace(shape=shape, param_shapes=pshapes))
    return graph.replace(nodes=nodes)
