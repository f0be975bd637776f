"""The builder of one conversion: emits nodes and params, materialises layouts and constants.

One :class:`Builder` per ``from_jax`` call (never shared): converters call its methods and it
collects the nodes, the params and the problems found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..graph.graph import Node
from .errors import Unsupported
from .layout import Perm, dims_to, identity
from .naming import Names, module_of
from .values import Const, Val


class Unconvertible(Exception):
    """Raised by a converter for an equation it cannot handle; the message is the hint."""


class Builder:
    """Nodes, params and problems of one conversion."""

    def __init__(self, input_names: Sequence[str], root: str = "") -> None:
        self.root = root  # the name-stack entry every equation shares (Linen's root module)
        self.scope = ""  # the name stack of the equation being converted (dotted)
        self.nodes: list[Node] = []
        self.params: dict[str, dict[str, np.ndarray]] = {}
        self.names = Names(input_names)
        self.problems: list[Unsupported] = []
        self._stored: dict[tuple[str, Perm], str] = {}
        self._consts: dict[tuple[int, Perm], str] = {}
        self._keep: list[Const] = []  # constants memoised by id must stay alive

    def emit(
        self,
        op: str,
        inputs: Sequence[str],
        *,
        base: str,
        shape: Sequence[int],
        attrs: Mapping[str, Any] | None = None,
        params: Mapping[str, np.ndarray] | None = None,
        scoped: bool = True,
    ) -> str:
        """Add a node named ``base`` (under the current name-stack scope unless ``base`` already
        starts with it, as names from param paths do); returns its (unique) name."""
        name = self.names.new(self._scoped(base) if scoped else base)
        pshapes = {k: tuple(np.shape(v)) for k, v in (params or {}).items()}
        self.nodes.append(Node(name, op, tuple(inputs), attrs or {}, shape, pshapes))
        if params:
            self.params[name] = {k: np.asarray(v) for k, v in params.items()}
        return name

    def _scoped(self, base: str) -> str:
        s = self.scope
        if self.root and (s == self.root or s.startswith(self.root + ".")):
            s = s[len(self.root) + 1 :]
        return base if not s or base.startswith(s) else f"{s}.{base}"

    def stored_as(self, v: Val, target: Perm) -> str:
        """The name of ``v`` stored with permutation ``target`` (a ``permute`` when needed)."""
        if tuple(v.perm) == tuple(target):
            return v.name
        key = (v.name, tuple(target))
        if key not in self._stored:
            dims = dims_to(v.perm, target)
            shape = tuple(v.shape[t] for t in target)
            self._stored[key] = self.emit(
                "permute",
                (v.name,),
                base=f"{v.name}.permute",
                shape=shape,
                attrs={"dims": dims},
                scoped=False,
            )
        return self._stored[key]

    def logical(self, v: Val) -> str:
        """The name of ``v`` in the program's own axis order."""
        return self.stored_as(v, identity(len(v.shape)))

    def const_node(self, c: Const, perm: Perm) -> str:
        """A ``constant`` node holding ``c`` stored with ``perm`` (one per constant and perm)."""
        key = (id(c), tuple(perm))
        if key not in self._consts:
            self._keep.append(c)
            value = np.transpose(c.value, perm) if c.value.ndim else c.value
            owner = module_of(c.paths)
            base = c.paths[0] if len(c.paths) == 1 else f"{owner}.const" if owner else "const"
            small = value if c.paths else _unbroadcast(value)
            scoped = not c.paths  # names from param paths stand alone
            name = self.emit(
                "constant", (), base=base, shape=small.shape, params={"value": small}, scoped=scoped
            )
            if small.shape != value.shape:
                # Stored small and expanded: the expand's shape is an attribute, which graphs
                # rebased for another batch size take from the new float graph (a causal
                # mask broadcast over the batch stays right for any batch).
                attrs = {"shape": value.shape}
                name = self.emit(
                    "expand", (name,), base=f"{base}.expand", shape=value.shape, attrs=attrs
                )
            self._consts[key] = name
        return self._consts[key]

    def operand(self, x: Val | Const, perm: Perm) -> str:
        """``x`` as a graph value stored with ``perm`` (constants become ``constant`` nodes)."""
        if isinstance(x, Const):
            return self.const_node(x, perm)
        return self.stored_as(x, perm)

    def val(self, name: str, perm: Perm, aval: Any) -> Val:
        """The :class:`Val` of node ``name`` holding output ``aval`` stored with ``perm``."""
        return Val(name, tuple(perm), tuple(aval.shape), np.dtype(aval.dtype))


def _unbroadcast(value: np.ndarray) -> np.ndarray:
    """``value`` with every axis along which it is constant reduced to size 1."""
    for axis in range(value.ndim):
        if value.shape[axis] > 1:
            first = np.take(value, [0], axis=axis)
            if np.array_equal(value, np.broadcast_to(first, value.shape), equal_nan=True):
                value = first
    return value
