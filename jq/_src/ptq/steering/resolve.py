"""Steering rules resolved on a graph: which nodes each rule applies to, checked against
the quantizers the platform places, into a :class:`Steering` record that placement applies
(``placement.place``).

A rule that matches no node, or only nodes without the quantizer its fields set (a conv fused
with its ReLU has no activation quantizer of its own), is an error naming the closest names:
by spelling, and by role for the words people give a network's head and stem.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from ...graph.graph import Graph
from .overrides import ACTIVATION, WEIGHTS, NodeOverride, fields_text
from .rules import Rule, Selector, spellings

if TYPE_CHECKING:
    from ..placement.platform import Placement


class Steering(NamedTuple):
    """The rules resolved on one graph: the fields they set on each node.

    Attributes:
      overrides: ``{node: NodeOverride}`` for every node a rule applies to, the rules merged
        in order (a later rule wins field by field); read before the node's search.
      final: ``{node: NodeOverride}``: in compat mode, MCT's ``ChangeFinal*`` actions, which
        change the quantizer after the search (empty outside compat mode).
      notes: one line per rule: what it set on which nodes (``QuantizationInfo.notes``).
    """

    overrides: Mapping[str, NodeOverride]
    final: Mapping[str, NodeOverride]
    notes: tuple[str, ...] = ()


def resolve(
    rules: Sequence[Rule],
    graph: Graph,
    placement: Placement,
    *,
    compat: bool = False,
    aliases: Mapping[str, str] | None = None,
    fn: str = "jq",
) -> Steering:
    """``rules`` resolved on ``graph`` (batch norms folded).

    Args:
      rules: from :func:`parse_rules`, in order (a later rule wins field by field).
      graph: the float graph whose node names the rules select.
      placement: where the platform places its quantizers (``placement.plan_quantization``):
        a rule applies to the selected nodes that have a quantizer its fields set.
      compat: MCT's order for ``ChangeFinal*`` actions (see :attr:`Steering.final`).
      aliases: ``{other name: node name}`` MCT's filters match too (:func:`spellings`).
      fn: the entry point's name, for messages.

    Returns:
      :class:`Steering`.

    Raises:
      ValueError: a rule that matches no node (naming the closest names), or only nodes
        without the quantizer its fields set.
    """
    named = [(i, "input") for i in graph.inputs] + [(n.name, n.op) for n in graph.nodes]
    nodes = [(spellings(n, aliases), op) for n, op in named]
    has = {WEIGHTS: {k for k, _ in placement.kernels}, ACTIVATION: set(placement.activations)}
    cand: dict[str, NodeOverride] = {}
    final: dict[str, NodeOverride] = {}
    notes = []
    for r in rules:
        hit = _matched(r, nodes, has, placement, fn)
        target = final if r.final and compat else cand
        for m in hit:
            target[m] = target.get(m, NodeOverride()).then(r.override)
        shown = ", ".join(hit[:8]) + (f" and {len(hit) - 8} more" if len(hit) > 8 else "")
        notes.append(f"steering: {r.source} -> {shown}: {fields_text(r.override)}")
    return Steering(cand, final, tuple(notes))


def bn_aliases(source: Graph, folded: Sequence[str]) -> dict[str, str]:
    """``{MCT's name: node}`` for the convs that absorbed a batch norm: MCT names such a
    conv ``<conv>_bn`` (``source`` is the graph before folding, ``folded`` the batch norms
    folded)."""
    return {n.inputs[0] + "_bn": n.inputs[0] for n in source.nodes if n.name in folded and n.inputs}


def _matched(
    r: Rule,
    nodes: list[tuple[tuple[str, ...], str]],
    has: dict[str, set[str]],
    placement: Placement,
    fn: str,
) -> list[str]:
    """The nodes ``r`` applies to: those it selects that have a quantizer its fields set.

    Raises:
      ValueError: it selects no node, or, for a kind of field it sets, no node with that
        quantizer.
    """
    sel = [names[0] for names, op in nodes if r.selector.matches(names, op)]
    if not sel:
        raise ValueError(
            f"{fn}: {r.source} matches no node of the model; {_closest(r.selector, nodes)} "
            "(node names as QuantizationInfo.layers and the report print them)"
        )
    kinds = r.override.kinds()
    for kind in sorted(kinds):
        if not any(n in has[kind] for n in sel):
            raise ValueError(
                f"{fn}: {r.source} sets {kind} fields ({fields_text(r.override, kind)}) but "
                "none of "
                f"the nodes it matches has a{'n' if kind == ACTIVATION else ''} {kind} "
                f"quantizer: {', '.join(sel[:5])}{_why_none(kind, sel, has, placement)}"
            )
    return [n for n in sel if any(n in has[k] for k in kinds)]


def _why_none(kind: str, sel: list[str], has: dict[str, set[str]], placement: Placement) -> str:
    if kind == WEIGHTS:
        return f" (quantized kernels: {', '.join(sorted(has[WEIGHTS])[:8]) or 'none'})"
    fused = dict(placement.fused)
    hints = [f"{n} is fused with {fused[n]} (set it on {fused[n]!r})" for n in sel if n in fused]
    if hints:
        return "; " + "; ".join(hints[:3])
    return " (shape ops, max-pool and constants carry no quantizer of their own)"


# Names people give the last and first layers of a network: a rule naming one that the model
# spells otherwise (``classifier`` on a ResNet, whose head is ``fc``) is pointed at the layer
# by its role as well as by spelling.
_HEAD_WORDS = frozenset(
    {"classifier", "head", "heads", "fc", "logits", "output", "out", "last", "final", "cls",
     "predictions", "prediction", "lm_head", "top"}
)  # fmt: skip
_STEM_WORDS = frozenset({"stem", "first", "conv1", "conv_stem", "input", "patch_embed", "embed"})
_KERNEL_OPS = ("linear", "conv", "conv_transpose")


def _by_role(key: str, nodes: list[tuple[tuple[str, ...], str]]) -> list[str]:
    """The nodes ``key`` names by role: the last linear layer (else the last kernel) for a
    head-like word, the first kernel for a stem-like one."""
    words = {w for w in re.split(r"[^a-z0-9_]+", key.lower()) if w}
    words |= {p for w in words for p in w.split("_")}
    kernels = [n[0] for n, op in nodes if op in _KERNEL_OPS]
    if words & _HEAD_WORDS:
        linear = [n[0] for n, op in nodes if op == "linear"]
        return (linear or kernels)[-1:]
    if words & _STEM_WORDS:
        return kernels[:1]
    return []


def _closest(s: Selector, nodes: list[tuple[tuple[str, ...], str]]) -> str:
    names = [n[0] for n, _ in nodes]
    if s.kind == "ops":
        return f"the model's ops: {', '.join(sorted({op for _, op in nodes}))}"
    if s.kind in ("glob", "name", "scope"):
        by_spelling = {a: n[0] for n, _ in nodes for a in n}
        key = s.text.replace("*", "").replace("?", "") if s.kind == "glob" else s.text
        role = _by_role(key, nodes)
        close = difflib.get_close_matches(key, list(by_spelling), n=5, cutoff=0.3)
        close = [c for c in dict.fromkeys(by_spelling[c] for c in close) if c not in role]
        shown = [f"{r!r} (the model's {_role_text(r, nodes)})" for r in role]
        shown += [repr(c) for c in close[: 5 - len(shown)]]
        if shown:
            return f"closest names: {', '.join(shown)}"
    return f"its names: {', '.join(map(repr, names[:8]))}{', ...' if len(names) > 8 else ''}"


def _role_text(name: str, nodes: list[tuple[tuple[str, ...], str]]) -> str:
    ops = {n[0]: op for n, op in nodes}
    kernels = [n[0] for n, op in nodes if op in _KERNEL_OPS]
    linear = [n[0] for n, op in nodes if op == "linear"]
    if linear and name == linear[-1]:
        return "last linear layer"
    place = "first" if kernels and name == kernels[0] else "last"
    return f"{place} {ops[name]} layer"
