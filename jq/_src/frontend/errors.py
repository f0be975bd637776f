"""Errors of the JAX front end (``jq.from_jax``)."""

from __future__ import annotations

from typing import NamedTuple


class Unsupported(NamedTuple):
    """One equation of the traced program that has no conversion."""

    primitive: str  # the JAX primitive (``eqn.primitive.name``)
    hint: str  # what to do about it
    where: str = ""  # the user's source line that produced it, when JAX recorded one


class UnsupportedPrimitiveError(NotImplementedError):
    """Some primitives of the traced program have no conversion; ``.primitives`` lists every one
    (:class:`Unsupported`). Raised once per conversion, after every equation was looked at."""

    def __init__(self, what: str, items: list[Unsupported]):
        self.primitives = list(items)
        lines = [f"{what}: {len(self.primitives)} unsupported primitive use(s):"]
        for u in self.primitives:
            lines.append(f"  - {u.primitive}: {u.hint}")
            if u.where:
                lines.append(f"      at {u.where}")
        super().__init__("\n".join(lines))
