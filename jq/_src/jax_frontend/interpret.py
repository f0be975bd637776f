"""Running a jaxpr abstractly into a :class:`Builder`: inline calls, evaluate what is known,
convert the rest with the primitive table, collect what cannot be converted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from jax.extend import core as jcore

from . import kernels as _kernels  # noqa: F401  (registers the kernel-layer converters)
from .context import Builder, Unconvertible
from .errors import Unsupported
from .naming import scope, source_line
from .primitives import DEFAULT_HINT, HINTS, lookup
from .values import Const, Val, Value, merge_paths
from .walk import composite_op, inner_program


def _read(env: dict, atom: Any) -> Value:
    if isinstance(atom, jcore.Literal):
        return Const(np.asarray(atom.val))
    return env[atom]


def run_jaxpr(
    b: Builder,
    jaxpr: Any,
    consts: Sequence[Value],
    args: Sequence[Value],
    where: str = "",
    outer: str = "",
) -> list:
    """The outputs of ``jaxpr`` on ``consts`` and ``args``, emitting nodes into ``b``.

    ``where`` and ``outer`` are the user's source line and the name stack of the call being
    inlined: equations of an inner program (``jnp.cumsum`` is jitted) record no user frame of
    their own, and their name stack is relative to the call's."""
    env: dict[Any, Value] = {}
    for v, c in zip(jaxpr.constvars, consts, strict=True):
        env[v] = c
    for v, a in zip(jaxpr.invars, args, strict=True):
        env[v] = a
    for eqn in jaxpr.eqns:
        ins = [_read(env, a) for a in eqn.invars]
        b.scope = ".".join(p for p in (outer, scope(eqn.source_info)) if p)
        outs = _equation(b, eqn, ins, source_line(eqn.source_info) or where)
        for var, out in zip(eqn.outvars, outs, strict=True):
            if not isinstance(var, jcore.DropVar):
                env[var] = out
    return [_read(env, v) for v in jaxpr.outvars]


def _as_const(c: Any) -> Value:
    return c if isinstance(c, (Val, Const)) else Const(np.asarray(c), (), True)


def _equation(b: Builder, eqn: Any, ins: list[Value], where: str) -> list[Value]:
    op = composite_op(eqn)
    if op is not None and isinstance(ins[0], Val):
        x = ins[0]
        name = b.emit(op, (x.name,), base=op, shape=x.stored_shape)
        return [b.val(name, x.perm, eqn.outvars[0].aval)]
    inner = inner_program(eqn)
    if inner is not None:
        inner_consts = [_as_const(c) for c in inner.consts]
        return run_jaxpr(b, inner.jaxpr, inner_consts, ins, where, b.scope)
    consts = [a for a in ins if isinstance(a, Const)]
    if len(consts) == len(ins):
        return _evaluate(eqn, consts)
    prim = eqn.primitive.name
    fn = lookup(prim)
    hint = HINTS.get(prim, DEFAULT_HINT)
    if fn is not None:
        try:
            return fn(b, eqn, ins)
        except Unconvertible as e:
            hint = str(e)
    b.problems.append(Unsupported("", prim, hint, where))
    return [_placeholder(v) for v in eqn.outvars]


def _evaluate(eqn: Any, ins: list[Const]) -> list[Value]:
    """An equation on constants, computed now (constant folding)."""
    out = _fold(eqn, [c.value for c in ins])
    outs = out if eqn.primitive.multiple_results else [out]
    paths, closed = merge_paths(ins)
    return [Const(np.asarray(o), paths, closed) for o in outs]


def _fold(eqn: Any, values: list[np.ndarray]) -> Any:
    """The equation's result on ``values``. A float32 ``rsqrt`` is ``1 / sqrt`` (each step
    correctly rounded), as jq folds a torch batch norm: XLA's ``rsqrt`` can be one ulp off
    that, and a Flax batch norm's scale ``rsqrt(var + eps) * scale`` would then fold into the
    kernels one ulp away from its torch twin's, enough to flip a near-tie in a threshold
    search (MAE)."""
    if eqn.primitive.name == "rsqrt" and values[0].dtype == np.float32:
        return np.float32(1) / np.sqrt(values[0])
    return eqn.primitive.bind(*values, **eqn.params)


def _placeholder(var: Any) -> Val:
    """A stand-in output for an unconverted equation, so the rest can still be looked at."""
    aval = var.aval
    return Val("<unsupported>", tuple(range(len(aval.shape))), tuple(aval.shape), aval.dtype)
