"""Errors raised by jq_torch."""

from __future__ import annotations

from typing import NamedTuple


class Unsupported(NamedTuple):
    """One op that could not be converted."""

    node: str  # the jq node name it would have had (module path based)
    op: str  # the aten op (or jq op, for ``to_torch``)
    hint: str  # what to do about it
    where: str = ""  # source location, when torch recorded one


class UnsupportedOpError(NotImplementedError):
    """Some ops of the model have no converter; ``.ops`` lists all of them (:class:`Unsupported`).

    Raised once per conversion, after every op has been looked at.
    """

    def __init__(self, what: str, ops: list[Unsupported]):
        self.ops = list(ops)
        lines = [f"{what}: {len(self.ops)} unsupported op(s):"]
        for u in self.ops:
            lines.append(f"  - node {u.node!r}: {u.op}: {u.hint}")
            if u.where:
                lines.append(f"      at {u.where}")
        super().__init__("\n".join(lines))


class ExportError(RuntimeError):
    """``torch.export`` could not capture the model; the message carries torch's reason and the
    original exception is chained (``__cause__``)."""


class DynamicControlFlowError(ExportError):
    """The model branches (or sizes a tensor) on tensor values, which a static graph cannot
    represent."""
