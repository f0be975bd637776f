"""In-place ops (``relu_``, ``add_``, ``hardtanh_``, ...) converted as their out-of-place twins
where no other name can see the mutation, so an exported program needs no
``run_decompositions({})`` (its functionalization retraces the whole model: 3.9 s of GhostNet's
7.5 s export on the 2-core VM; most models written with ``inplace=True`` activations have these
ops and nothing else to functionalize).

The rule is conservative: the mutated argument and every tensor it aliases (its bases through
views, e.g. GhostNet's ``out[:, :c] += shortcut``, and earlier in-place ops) must be computed by
the graph (not an input, parameter or buffer), and none of them may be read after the mutation
except through the op's result, nor have another view taken.
Otherwise the caller functionalizes with torch.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx

aten = torch.ops.aten


def _writes_self_only(schema: Any) -> bool:
    args = schema.arguments
    first = bool(args) and args[0].alias_info is not None and args[0].alias_info.is_write
    others = any(a.alias_info is not None and a.alias_info.is_write for a in args[1:])
    return first and not others


def inplace_twin(target: Any) -> Any:
    """The out-of-place overload of an in-place ATen op (``aten.relu.default`` for
    ``aten.relu_.default``), or ``None``."""
    if not isinstance(target, torch._ops.OpOverload) or not target._schema.is_mutable:
        return None
    name = target.overloadpacket.__name__
    if not name.endswith("_") or name.startswith("_") or not _writes_self_only(target._schema):
        return None
    packet = getattr(aten, name[:-1], None)
    return None if packet is None else getattr(packet, target._overloadname, None)


def _is_view(node: fx.Node) -> bool:
    target = node.target
    if not isinstance(target, torch._ops.OpOverload) or inplace_twin(target) is not None:
        return False
    return any(r.alias_info is not None for r in target._schema.returns)


def _aliases(node: Any) -> list[fx.Node] | None:
    """``node`` and the tensors it aliases (its bases through views and in-place ops);
    ``None`` where one of them is not computed by the graph (an input, parameter or buffer)."""
    chain: list[fx.Node] = []
    while True:
        if not isinstance(node, fx.Node) or node.op != "call_function":
            return None
        chain.append(node)
        through = node.target is operator.getitem or _is_view(node)
        if not through and inplace_twin(node.target) is None:
            return chain
        node = node.args[0]


def _safe(node: fx.Node, order: dict[fx.Node, int]) -> bool:
    chain = _aliases(node.args[0]) if node.args else None
    if chain is None:
        return False
    mine = set(chain) | {node}
    # A view of an alias sees the mutation whenever it is read: refused outright.
    others = [u for a in chain for u in a.users if u not in mine]
    return all(order[u] < order[node] and not _is_view(u) for u in others)


def needs_functionalization(ep: torch.export.ExportedProgram) -> bool:
    """Whether ``ep`` mutates anything the out-of-place conversion could get wrong."""
    order = {n: i for i, n in enumerate(ep.graph.nodes)}
    for n in ep.graph.nodes:
        t = n.target
        if n.op != "call_function" or not isinstance(t, torch._ops.OpOverload):
            continue
        if t._schema.is_mutable and (inplace_twin(t) is None or not _safe(n, order)):
            return True
    return False
