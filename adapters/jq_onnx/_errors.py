"""Errors raised by jq_onnx."""

from __future__ import annotations

from collections.abc import Sequence

from jq._src.errors import Unsupported as Unsupported
from jq._src.errors import UnsupportedError


class UnsupportedOpError(UnsupportedError):
    """Some nodes of the ONNX model have no converter; ``.ops`` lists all of them
    (:class:`Unsupported`, ``node`` the ONNX node's name or its first output's, ``op`` the op
    type with its domain when not the default one). Raised once per conversion, after every node
    has been looked at. jq's one conversion error (``jq.UnsupportedPrimitiveError``), counting
    nodes in its message."""

    def __init__(self, what: str, ops: Sequence[Unsupported]) -> None:
        super().__init__(what, ops, kind="node")


class Unconvertible(Exception):
    """Raised by a converter for a node it cannot express (the message is the hint)."""
