"""jq's graph form: a static, hashable description of a model's dataflow.

A model is a :class:`Graph` (what to compute; hashable, so ``jax.jit`` can treat it as static)
plus a params pytree ``dict[node_name, dict[param_name, jax.Array]]`` (the numbers). Ops are names
from the table in ``jq/_src/graph/ops/``; ``jq.apply`` (``jq/_src/graph/apply.py``) runs a graph.

Layouts follow PyTorch, since that is where most graphs come from: data is channels-first
(``NCHW``), conv weights ``(out, in/groups, *kernel)``, linear weights ``(out, in)``,
conv_transpose weights ``(in, out/groups, *kernel)``.

Graphs are rewritten by building new ones: ``graph.replace(nodes=...)`` validates the result,
``graph.consumers(name)`` finds the users of a value, ``node.replace(...)`` edits a node.

Example:
  >>> import jq
  >>> g = jq.Graph(inputs=("x",), nodes=(
  ...     jq.Node("fc", "linear", ("x",)),
  ...     jq.Node("act", "relu", ("fc",)),
  ... ), outputs=("act",))
  >>> g
  Graph(inputs=('x',), nodes=<2 nodes>, outputs=('act',))
  >>> print(g)
  name  op      inputs  output shape  params
  ----  ------  ------  ------------  ------
  x     input           ?
  fc    linear  x       ?
  act   relu    fc      ?
  2 nodes, 0 params, outputs: act
  >>> [n.name for n in g.consumers("fc")]
  ['act']
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

_MISSING = object()


def _freeze(value: Any, where: str) -> Any:
    """Return ``value`` with lists turned into tuples (recursively); check it is hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, where) for v in value)
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"{where}: attribute values must be hashable (numbers, strings, tuples, None), "
            f"got {type(value).__name__}: {value!r}"
        ) from None
    return value


def _shape(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(d) for d in value)


@dataclasses.dataclass(frozen=True)
class Node:
    """One operation of a :class:`Graph`; frozen and hashable.

    Args:
      name: unique name of the node and of its output value (PyTorch graphs use the module
        path, e.g. ``"layer1.0.conv1"``). Its params live at ``params[name]``.
      op: op name from the op table (``jq/_src/graph/ops/``), e.g. ``"conv"``.
      inputs: names of the values (graph inputs or earlier nodes) passed positionally.
      attrs: static attributes: a mapping or ``(key, value)`` pairs, stored as a tuple sorted
        by key; lists become tuples; values must be hashable.
      shape: output shape recorded at conversion (metadata: not part of equality or hash).
      param_shapes: ``((param_name, shape), ...)`` recorded at conversion (metadata).
    """

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    attrs: tuple[tuple[str, Any], ...] = ()
    shape: tuple[int, ...] | None = dataclasses.field(default=None, compare=False)
    param_shapes: tuple[tuple[str, tuple[int, ...]], ...] = dataclasses.field(
        default=(), compare=False
    )

    if TYPE_CHECKING:  # what the constructor accepts; __post_init__ normalises it to the fields

        def __init__(
            self,
            name: str,
            op: str,
            inputs: str | Iterable[str] = (),
            attrs: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
            shape: Iterable[int] | None = None,
            param_shapes: Mapping[str, Iterable[int] | None]
            | Iterable[tuple[str, Iterable[int] | None]] = (),
        ) -> None: ...

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Node: name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.op, str) or not self.op:
            raise TypeError(f"Node {self.name!r}: op must be a non-empty str, got {self.op!r}")
        inputs = (self.inputs,) if isinstance(self.inputs, str) else tuple(self.inputs)
        if not all(isinstance(i, str) for i in inputs):
            raise TypeError(f"Node {self.name!r}: inputs must be value names, got {inputs!r}")
        items = self.attrs.items() if isinstance(self.attrs, Mapping) else self.attrs
        attrs = tuple(
            sorted((str(k), _freeze(v, f"Node {self.name!r} attr {k!r}")) for k, v in items)
        )
        keys = [k for k, _ in attrs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"Node {self.name!r}: duplicate attribute keys in {keys}")
        param_shapes = tuple(
            sorted((str(k), _shape(s)) for k, s in dict(self.param_shapes).items())
        )
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "attrs", attrs)
        object.__setattr__(self, "shape", _shape(self.shape))
        object.__setattr__(self, "param_shapes", param_shapes)

    def attr(self, key: str, default: Any = _MISSING) -> Any:
        """The value of attribute ``key`` (``default`` if given and the key is absent)."""
        for k, v in self.attrs:
            if k == key:
                return v
        if default is _MISSING:
            raise KeyError(f"Node {self.name!r} (op {self.op!r}) has no attribute {key!r}")
        return default

    @property
    def attrs_dict(self) -> dict[str, Any]:
        """The attributes as a new dict."""
        return dict(self.attrs)

    @property
    def param_count(self) -> int:
        """Number of scalars in the params recorded in ``param_shapes``."""
        return sum(math.prod(s) for _, s in self.param_shapes)

    def replace(self, **changes: Any) -> Node:
        """A copy with fields replaced, e.g. ``node.replace(inputs=("y",))``."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True, repr=False)
class Graph:
    """A model's dataflow: inputs, topologically ordered nodes, outputs. Frozen and hashable.

    Equality and hash cover ``inputs``, ``nodes`` (name, op, inputs, attrs) and ``outputs``;
    recorded shapes are metadata. The hash is cached, so passing a graph as a static argument of
    ``jax.jit`` costs little, and equal graphs (e.g. converted twice) share compiled code.

    Args:
      inputs: names of the graph inputs, in call order.
      nodes: the :class:`Node` s, each after the nodes it reads.
      outputs: names of the values returned (inputs or nodes).
      input_shapes: shapes of the example inputs (metadata, for the summary and for checks of
        input shapes); ``-1`` marks an axis of any size (a dynamic batch axis).
      pinned_by: when a front end could not make the batch axis dynamic, what pins it (the
        node and source line), quoted by errors for inputs of other shapes (metadata).

    Raises:
      ValueError: duplicate names, a node reading a value not defined before it, or an
        unknown output.
    """

    inputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...] | None, ...] = dataclasses.field(default=(), compare=False)
    pinned_by: str = dataclasses.field(default="", compare=False)
    _index: dict[str, int] = dataclasses.field(init=False, compare=False)
    _hash: int = dataclasses.field(init=False, compare=False)

    if TYPE_CHECKING:  # what the constructor accepts; __post_init__ normalises it to the fields

        def __init__(
            self,
            inputs: str | Iterable[str],
            nodes: Iterable[Node],
            outputs: str | Iterable[str],
            input_shapes: Iterable[Iterable[int] | None] = (),
            pinned_by: str = "",
        ) -> None: ...

    def __post_init__(self) -> None:
        inputs = (self.inputs,) if isinstance(self.inputs, str) else tuple(self.inputs)
        outputs = (self.outputs,) if isinstance(self.outputs, str) else tuple(self.outputs)
        nodes = tuple(self.nodes)
        for n in nodes:
            if not isinstance(n, Node):
                raise TypeError(f"Graph: nodes must be Node instances, got {type(n).__name__}")
        defined: dict[str, int] = {}
        for name in inputs:
            if name in defined:
                raise ValueError(f"Graph: duplicate input name {name!r}")
            defined[name] = -1
        for i, node in enumerate(nodes):
            for src in node.inputs:
                if src not in defined:
                    raise ValueError(
                        f"Graph: node {node.name!r} reads {src!r}, which is not a graph input "
                        "or an earlier node (nodes must be topologically ordered)"
                    )
            if node.name in defined:
                raise ValueError(f"Graph: duplicate value name {node.name!r}")
            defined[node.name] = i
        for name in outputs:
            if name not in defined:
                raise ValueError(f"Graph: output {name!r} is not an input or a node")
        if not outputs:
            raise ValueError("Graph: at least one output is required")
        shapes = tuple(_shape(s) for s in self.input_shapes)
        if shapes and len(shapes) != len(inputs):
            raise ValueError(f"Graph: {len(shapes)} input_shapes for {len(inputs)} inputs")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "outputs", outputs)
        object.__setattr__(self, "input_shapes", shapes)
        object.__setattr__(self, "_index", defined)
        object.__setattr__(self, "_hash", hash((inputs, nodes, outputs)))

    def __hash__(self) -> int:
        return self._hash

    def __len__(self) -> int:
        return len(self.nodes)

    def __reduce__(self) -> tuple[type[Graph], tuple[Any, ...]]:
        # Rebuild on unpickling: the cached hash of strings is only valid in this process.
        return (Graph, (self.inputs, self.nodes, self.outputs, self.input_shapes, self.pinned_by))

    def __repr__(self) -> str:
        return (
            f"Graph(inputs={self.inputs}, nodes=<{len(self.nodes)} nodes>, outputs={self.outputs})"
        )

    def __str__(self) -> str:
        return summary(self)

    def node(self, name: str) -> Node:
        """The node called ``name``. Raises ``KeyError`` for graph inputs and unknown names."""
        i = self._index.get(name, -1)
        if i < 0:
            raise KeyError(f"Graph has no node {name!r}")
        return self.nodes[i]

    def consumers(self, name: str) -> tuple[Node, ...]:
        """Nodes that read value ``name`` (in graph order)."""
        if name not in self._index:
            raise KeyError(f"Graph has no value {name!r}")
        return tuple(n for n in self.nodes if name in n.inputs)

    def replace(self, **changes: Any) -> Graph:
        """A new, validated graph with fields replaced, e.g. ``graph.replace(nodes=new_nodes)``.

        ``input_shapes`` and ``pinned_by`` are kept unless replaced.
        """
        fields = {
            "inputs": self.inputs,
            "nodes": self.nodes,
            "outputs": self.outputs,
            "input_shapes": self.input_shapes,
            "pinned_by": self.pinned_by,
        }
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"Graph.replace: unknown fields {sorted(unknown)}")
        return Graph(**{**fields, **changes})

    def accepts(self, shapes: Iterable[Iterable[int]]) -> bool:
        """Whether inputs of ``shapes`` fit ``input_shapes`` (``-1`` and unrecorded shapes fit
        any size; a graph without recorded shapes fits any inputs).

        Example:
          >>> g = Graph(("x",), (Node("y", "relu", ("x",)),), ("y",), input_shapes=[(-1, 4)])
          >>> g.accepts([(7, 4)]), g.accepts([(7, 5)])
          (True, False)
        """
        if not self.input_shapes:
            return True
        given = [tuple(s) for s in shapes]
        return len(given) == len(self.input_shapes) and all(
            e is None or (len(s) == len(e) and all(d in (-1, n) for d, n in zip(e, s, strict=True)))
            for s, e in zip(given, self.input_shapes, strict=True)
        )

    def fingerprint(self) -> str:
        """A hex digest of the graph that is stable across processes (``hash`` of strings is
        salted per process), e.g. for on-disk caches."""
        text = repr(
            (self.inputs, [(n.name, n.op, n.inputs, n.attrs) for n in self.nodes], self.outputs)
        )
        return hashlib.sha256(text.encode()).hexdigest()


def _fmt_shape(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "(" + ", ".join(map(str, shape)) + ")"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def summary(graph: Graph, params: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """A table with one row per node: name, op, inputs, output shape, param count.

    Args:
      graph: the graph.
      params: optional params pytree; when given, counts come from it, otherwise from the
        shapes recorded at conversion (``Node.param_shapes``).

    Returns:
      The table as a string (``print(graph)`` prints it without params).
    """

    def count(node: Node) -> int:
        if params is None:
            return node.param_count
        return sum(math.prod(getattr(v, "shape", ())) for v in params.get(node.name, {}).values())

    rows: list[tuple[str, ...]] = [("name", "op", "inputs", "output shape", "params")]
    shapes = graph.input_shapes or (None,) * len(graph.inputs)
    for name, shape in zip(graph.inputs, shapes, strict=True):
        rows.append((name, "input", "", _fmt_shape(shape), ""))
    total = 0
    for node in graph.nodes:
        c = count(node)
        total += c
        rows.append(
            (
                _clip(node.name, 48),
                node.op,
                _clip(", ".join(node.inputs), 40),
                _fmt_shape(node.shape),
                f"{c:,}" if c else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]

    def line(r: Iterable[str]) -> str:
        cells = list(r)
        left = [c.ljust(w) for c, w in zip(cells[:-1], widths[:-1], strict=True)]
        return "  ".join(left + [cells[-1].rjust(widths[-1])]).rstrip()

    out = [line(rows[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows[1:]]
    out.append(f"{len(graph.nodes)} nodes, {total:,} params, outputs: {', '.join(graph.outputs)}")
    return "\n".join(out)
