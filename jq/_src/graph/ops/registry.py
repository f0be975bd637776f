"""The op table: ``register_op`` adds an op, ``get_op`` finds one, ``registered_ops`` lists them.

The table is filled by the op modules of this package when ``jq._src.graph.ops`` is imported
(and by ``register_op`` calls of users and of ``jq._src.ptq.probe``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import jax

OpFn = Callable[..., jax.Array]
# A node's entry of the params pytree: ``{"weight": ..., "bias": ...}``, empty for ops without
# params.
Params = Mapping[str, jax.Array]

_OPS: dict[str, OpFn] = {}


def register_op(name: str, *, override: bool = False) -> Callable[[OpFn], OpFn]:
    """Decorator adding ``fn(params, *inputs, **attrs) -> Array`` to the op table as ``name``.

    Raises:
      ValueError: ``name`` is already registered and ``override`` is False.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_op: name must be a non-empty str, got {name!r}")

    def decorate(fn: OpFn) -> OpFn:
        if name in _OPS and not override:
            raise ValueError(f"register_op: op {name!r} is already registered")
        _OPS[name] = fn
        return fn

    return decorate


def get_op(name: str) -> OpFn:
    """The JAX function of op ``name``. Raises ``ValueError`` for an unknown op."""
    try:
        return _OPS[name]
    except KeyError:
        raise ValueError(
            f"unknown op {name!r}; registered ops: {', '.join(sorted(_OPS))}. "
            "Add one with jq register_op."
        ) from None


def registered_ops() -> Mapping[str, OpFn]:
    """A read-only view of the op table."""
    return MappingProxyType(_OPS)
