"""The converter table: ONNX op type -> function emitting jq nodes.

A converter is ``fn(ctx, node, *inputs) -> Value | list[Value]``: ``ctx`` the
:class:`~jq_onnx._context.Context`, ``node`` the :class:`~jq_onnx._context.OnnxNode`, ``inputs``
one per ONNX input (a NumPy array for a constant, a ``Tensor`` for a runtime value, ``None`` for
an omitted optional input). It returns the node's outputs, in order, or raises
``Unconvertible`` with a hint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Converter = Callable[..., Any]
CONVERTERS: dict[str, Converter] = {}


def register_converter(*op_types: str, override: bool = False) -> Callable[[Converter], Converter]:
    """Decorator adding a converter for ONNX ``op_types`` (default domain; a custom domain's
    op is written ``"domain::Op"``).

    Raises:
      ValueError: an op type already has a converter and ``override`` is False.
    """

    def add(fn: Converter) -> Converter:
        for op in op_types:
            if op in CONVERTERS and not override:
                raise ValueError(f"register_converter: {op!r} already has a converter")
            CONVERTERS[op] = fn
        return fn

    return add
