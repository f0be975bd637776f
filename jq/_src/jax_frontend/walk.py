"""The call structure of a jaxpr: which equations wrap an inner program to inline (``jit``,
``custom_jvp_call``, ``custom_vjp_call``, ``remat``), and which jitted helpers are one jq op
(``jax.nn.silu``, ``jax.nn.relu``)."""

from __future__ import annotations

from typing import Any, NamedTuple

from jax.extend import core as jcore

# Primitives whose equation calls an inner jaxpr on all of its inputs.
CALL_PRIMITIVES = frozenset(
    {
        "pjit",
        "jit",
        "closed_call",
        "core_call",
        "custom_jvp_call",
        "custom_vjp_call",
        "custom_vjp_call_jaxpr",
        "remat",
        "remat2",
        "checkpoint",
        "named_call",
    }
)
_JAXPR_KEYS = ("jaxpr", "call_jaxpr", "fun_jaxpr")

# Names of jitted (or custom-jvp) JAX helpers converted as one jq op each; applied only to
# one-input, one-output, shape-preserving calls.
COMPOSITES = {
    "silu": "silu",
    "swish": "silu",
    "relu": "relu",
    "relu6": "relu6",
    "sigmoid": "sigmoid",
    "hard_swish": "hardswish",
    "hard_silu": "hardswish",
    "hard_sigmoid": "hardsigmoid",
}


class Inner(NamedTuple):
    """An inner program: its jaxpr and the values of its constants."""

    jaxpr: Any
    consts: tuple


def inner_program(eqn: Any) -> Inner | None:
    """The program an equation calls, for the call primitives; ``None`` otherwise."""
    if eqn.primitive.name not in CALL_PRIMITIVES:
        return None
    for key in _JAXPR_KEYS:
        j = eqn.params.get(key)
        if isinstance(j, jcore.ClosedJaxpr):
            return Inner(j.jaxpr, tuple(j.consts))
        if isinstance(j, jcore.Jaxpr):
            return Inner(j, ())
    return None


def composite_op(eqn: Any) -> str | None:
    """The jq op of a call to a known JAX helper (``jit[name=silu]``), or ``None``."""
    if eqn.primitive.name not in CALL_PRIMITIVES or "name" not in eqn.params:
        return None
    op = COMPOSITES.get(str(eqn.params["name"]))
    if op is None or len(eqn.invars) != 1 or len(eqn.outvars) != 1:
        return None
    a, b = eqn.invars[0].aval, eqn.outvars[0].aval
    if getattr(a, "shape", None) != getattr(b, "shape", None):
        return None
    return op
