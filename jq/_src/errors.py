"""The one "cannot convert" error of every converter: ``jq.from_jax`` (JAX primitives),
``jq_torch.from_torch`` (ATen ops) and ``jq_torch.to_torch`` (jq ops)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Unsupported(NamedTuple):
    """One op that could not be converted.

    Attributes:
      node: the jq node name it would have had (``""`` where there is none: a JAX primitive).
      op: the op (an ATen op, a jq op, a JAX primitive's name).
      hint: what to do about it.
      where: the user's source line that produced it, when the tracer recorded one.
    """

    node: str
    op: str
    hint: str
    where: str = ""

    @property
    def primitive(self) -> str:
        """The JAX primitive's name (``op``, as the JAX front end calls it)."""
        return self.op


class UnsupportedError(NotImplementedError):
    """Some ops of a model have no conversion; ``.ops`` (also ``.primitives``) lists every one
    (:class:`Unsupported`). Raised once per conversion, after every op was looked at.

    ``jq.UnsupportedPrimitiveError`` and ``jq_torch.UnsupportedOpError`` are this class.

    Args:
      what: the conversion, starting the message (``"from_torch(Net)"``).
      ops: the ops that failed.
      kind: what an op is called in the message (``"op"``, ``"primitive use"``).
    """

    def __init__(self, what: str, ops: Sequence[Unsupported], *, kind: str = "op") -> None:
        self.ops = list(ops)
        lines = [f"{what}: {len(self.ops)} unsupported {kind}(s):"]
        for u in self.ops:
            lines.append(
                f"  - node {u.node!r}: {u.op}: {u.hint}" if u.node else f"  - {u.op}: {u.hint}"
            )
            if u.where:
                lines.append(f"      at {u.where}")
        super().__init__("\n".join(lines))

    @property
    def primitives(self) -> list[Unsupported]:
        """``ops``, as the JAX front end calls them."""
        return self.ops
