"""Errors raised by jq_onnx."""

from __future__ import annotations

from typing import NamedTuple


class Unsupported(NamedTuple):
    """One ONNX node that could not be converted."""

    node: str  # the ONNX node's name (or its first output's, when it has none)
    op: str  # the ONNX op type, with its domain when not the default one
    hint: str  # what to do about it


class UnsupportedOpError(NotImplementedError):
    """Some nodes of the ONNX model have no converter; ``.ops`` lists all of them
    (:class:`Unsupported`). Raised once per conversion, after every node has been looked at."""

    def __init__(self, what: str, ops: list[Unsupported]):
        self.ops = list(ops)
        lines = [f"{what}: {len(self.ops)} unsupported node(s):"]
        lines += [f"  - node {u.node!r}: {u.op}: {u.hint}" for u in self.ops]
        super().__init__("\n".join(lines))


class Unconvertible(Exception):
    """Raised by a converter for a node it cannot express (the message is the hint)."""
