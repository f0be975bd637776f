"""What a steering rule is: the nodes it selects (:class:`Selector`), what it sets
(a :class:`NodeOverride`) and where it came from (:class:`Rule`), and the node names a
selector compares against (:func:`spellings`: jq's, then MCT's)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import NamedTuple

from .overrides import NodeOverride


class Selector(NamedTuple):
    """Which nodes a rule applies to.

    Attributes:
      kind: ``"glob"`` (jq pattern), ``"name"`` (MCT ``NodeNameFilter``), ``"scope"``
        (``NodeNameScopeFilter``: a substring), ``"ops"`` (``NodeTypeFilter``: jq ops),
        ``"and"`` / ``"or"`` / ``"not"`` of ``parts``, or ``"any"``.
      text: the pattern, name, scope or type name.
      ops: the jq ops a ``"ops"`` selector matches.
      parts: the operands of ``"and"``, ``"or"``, ``"not"``.
    """

    kind: str
    text: str = ""
    ops: frozenset[str] = frozenset()
    parts: tuple[Selector, ...] = ()

    def matches(self, names: tuple[str, ...], op: str) -> bool:
        """Whether a node is selected: ``names`` is its jq name, then its other spellings
        (see :func:`spellings`), ``op`` its op. A glob matches the jq name; MCT's filters
        (``NodeNameFilter``, ``NodeNameScopeFilter``) any spelling."""
        k = self.kind
        if k == "glob":
            return fnmatch.fnmatchcase(names[0], self.text)
        if k == "name":
            return self.text in names
        if k == "scope":
            return any(self.text in n for n in names)
        if k == "ops":
            return op in self.ops
        if k == "and":
            return all(p.matches(names, op) for p in self.parts)
        if k == "or":
            return any(p.matches(names, op) for p in self.parts)
        if k == "not":
            return not self.parts[0].matches(names, op)
        return True  # "any"


def spellings(name: str, aliases: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Node ``name`` as jq prints it, then as MCT does: ``.`` as ``_`` (MCT names
    ``layer1.0.conv1`` ``layer1_0_conv1``) and any ``aliases`` pointing at it (MCT renames a
    conv that absorbed a batch norm ``<conv>_bn``)."""
    out = [name, _mct_name(name)]
    for a, n in (aliases or {}).items():
        if n == name:
            out += [a, _mct_name(a)]
    return tuple(dict.fromkeys(out))


def _mct_name(name: str) -> str:
    return name.replace(".", "_")


class Rule(NamedTuple):
    """One steering rule: the nodes it selects, what it sets, and where it came from.

    Attributes:
      selector: the :class:`Selector`.
      override: the :class:`NodeOverride` it applies.
      source: the rule in words, for messages (``"overrides['layer2.*']"``,
        ``"debug_config.network_editor[0] (NodeNameFilter('conv1'))"``).
      final: an MCT ``ChangeFinal*`` action: in compat mode its bit widths change the
        quantizer after the search (which ran at the earlier bit width), as in MCT.
    """

    selector: Selector
    override: NodeOverride
    source: str
    final: bool = False


def describe(s: Selector) -> str:
    """A selector in MCT's (or jq's) words."""
    if s.kind == "glob":
        return repr(s.text)
    if s.kind == "name":
        return f"NodeNameFilter({s.text!r})"
    if s.kind == "scope":
        return f"NodeNameScopeFilter({s.text!r})"
    if s.kind == "ops":
        return f"NodeTypeFilter({s.text})"
    if s.kind == "not":
        return f"not {describe(s.parts[0])}"
    if s.kind in ("and", "or"):
        return f" {'&' if s.kind == 'and' else '|'} ".join(describe(p) for p in s.parts)
    return "any node"
