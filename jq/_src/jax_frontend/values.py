"""What a jaxpr variable becomes during conversion: a graph value or a known constant."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .layout import Perm


class Val(NamedTuple):
    """A value computed by the graph: node (or input) ``name`` holds
    ``transpose(logical, perm)`` (:mod:`jq._src.jax_frontend.layout`).

    Attributes:
      name: the graph value's name.
      perm: storage permutation of the logical axes.
      shape: the logical shape (the JAX program's).
      dtype: numpy dtype.
    """

    name: str
    perm: Perm
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def stored_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[p] for p in self.perm)


class Const(NamedTuple):
    """A value known at conversion (params, literals, closed-over arrays, and anything computed
    from them alone: ``reshape(bias)``, ``rsqrt(var + eps) * scale``).

    Attributes:
      value: the array, in the program's (logical) layout.
      paths: dotted pytree paths of the params it derives from (empty: not from params).
      closed: derives from an array the function closes over (a jaxpr constant).
    """

    value: np.ndarray
    paths: tuple[str, ...] = ()
    closed: bool = False

    @property
    def is_scalar(self) -> bool:
        return self.value.ndim == 0


Value = Val | Const


def merge_paths(consts: list[Const]) -> tuple[tuple[str, ...], bool]:
    """The paths and closed flag of a constant computed from ``consts``."""
    paths = tuple(sorted({p for c in consts for p in c.paths}))
    return paths, any(c.closed for c in consts)
