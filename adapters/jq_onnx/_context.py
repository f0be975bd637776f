"""The state of one ONNX-to-jq conversion: values, emitted nodes, params, batch tracking.

An ONNX value is either a constant (a NumPy array: an initializer, a ``Constant`` node, or a
shape subgraph folded at conversion) or a :class:`Tensor`, the output of an emitted jq node or a
graph input. Tensors carry their shape at the conversion batch size (found with
``jax.eval_shape`` of each emitted op) and whether axis 0 is the batch axis, which is what keeps
a dynamic batch: a reshape that keeps axis 0 is written with ``-1`` there, and anything that
needs the batch size as a number pins it (:meth:`Context.pin`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jq import Node
from jq._src.graph.ops import get_op
from jq._src.names import Names

from ._errors import Unconvertible


class Tensor(NamedTuple):
    """A runtime value of the jq graph: a graph input or an emitted node's output.

    Attributes:
      name: the jq value name.
      shape: its shape at the conversion batch size.
      dtype: its dtype (JAX canonical: 32-bit unless x64 is on).
      batch: the batch axis (the axis whose size follows the input batch), or ``None``.
      dyn: the value depends on a graph input (its shape may follow the batch size).
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    batch: int | None
    dyn: bool = True


Value = Tensor | np.ndarray


class OnnxNode(NamedTuple):
    """One ONNX node as the converters see it."""

    name: str
    op_type: str
    attrs: Mapping[str, Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def host_array(a: np.ndarray) -> np.ndarray:
    """``a`` with 64-bit dtypes narrowed to what JAX holds without ``jax_enable_x64``."""
    a = np.asarray(a)
    return a.astype(jax.dtypes.canonicalize_dtype(a.dtype)) if a.dtype.kind in "fiub" else a


class Context:
    """Collects the jq nodes and params of one conversion.

    Args:
      dynamic_batch: whether the graph keeps a dynamic batch axis (until a node pins it).
      consumers: ``{onnx value: number of readers}`` (graph outputs count as readers).
      reserved: names the jq nodes must not take (the graph inputs).
    """

    def __init__(
        self, dynamic_batch: bool, consumers: Mapping[str, int], reserved: Sequence[str]
    ) -> None:
        self.dynamic_batch = dynamic_batch
        self.consumers = consumers
        self.nodes: list[Node] = []
        self.values: dict[str, Tensor] = {}  # jq value name -> Tensor (inputs and nodes)
        self.params: dict[str, dict[str, np.ndarray]] = {}
        self.pinned_by = ""
        self.node: OnnxNode | None = None  # the ONNX node being converted
        self._names = Names(reserved)

    def fresh(self, base: str) -> str:
        """A jq value name not used yet, from ``base`` (an ONNX node or value name)."""
        return self._names.new(re.sub(r"\s+", "_", base.strip("/")))

    def pin(self, why: str) -> None:
        """Record that the batch size is fixed by the current node (the first reason is kept)."""
        if not self.pinned_by:
            where = self.node.name if self.node else "?"
            self.pinned_by = f"ONNX node {where!r}: {why}"

    def tensor(self, v: Value) -> Tensor:
        """``v`` as a graph value: a constant becomes a ``constant`` node."""
        if isinstance(v, Tensor):
            return v
        t = self.emit("constant", [], params={"value": host_array(v)}, batch=None, suffix="c")
        return t._replace(dyn=False)

    def emit(
        self,
        op: str,
        inputs: Sequence[Value],
        attrs: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, np.ndarray] | None = None,
        batch: int | None | str = "auto",
        suffix: str = "",
    ) -> Tensor:
        """Add a jq node and return its output.

        Args:
          op: jq op name; inputs: values (constants become ``constant`` nodes); attrs: static
            attributes; params: the node's params (NumPy).
          batch: the output's batch axis; ``"auto"``: the first input's with a batch axis, if
            the output has its rank and its size on that axis (elementwise ops, linear layers).
          suffix: appended to the ONNX node name (for nodes after the first of one ONNX node).
        """
        xs = [self.tensor(v) for v in inputs]
        attrs = dict(attrs or {})
        p = {k: host_array(v) for k, v in (params or {}).items()}
        base = self.node.name if self.node else op
        name = self.fresh(f"{base}.{suffix}" if suffix else base)
        out = _eval_shape(op, p, xs, attrs, name)
        if batch == "auto":
            first = next((x for x in xs if x.batch is not None), None)
            batch = None
            a = None if first is None else first.batch
            if first is not None and a is not None and len(out.shape) == len(first.shape):
                batch = a if out.shape[a] == first.shape[a] else None
        shapes = {k: v.shape for k, v in p.items()}
        self.nodes.append(
            Node(name, op, tuple(x.name for x in xs), attrs, shape=out.shape, param_shapes=shapes)
        )
        if p:
            self.params[name] = p
        dyn = any(x.dyn for x in xs)
        axis = batch if isinstance(batch, int) and dyn else None
        self.values[name] = Tensor(name, tuple(out.shape), np.dtype(out.dtype), axis, dyn)
        return self.values[name]


def _eval_shape(op: str, params, xs: Sequence[Tensor], attrs, name: str):
    fn = get_op(op)
    specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in xs]
    try:
        return jax.eval_shape(lambda p, *a: fn(p, *a, **attrs), params, *specs)
    except Exception as e:  # noqa: BLE001  (any trace error: the node cannot be expressed)
        shapes = [x.shape for x in xs]
        raise Unconvertible(f"jq op {op!r} fails on inputs of shapes {shapes}: {e}") from e
