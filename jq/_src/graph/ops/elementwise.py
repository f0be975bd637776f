"""Elementwise math ops: arithmetic, torch's Core ATen unary and binary math, the ``lax``
primitives ``jq.from_jax`` emits, and comparisons and logic.

Binary ops take two broadcast tensors, or one tensor and [scalar, reverse] (``reverse=True``
puts the scalar on the left: ``scalar - x``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ._broadcast import binary
from .registry import Params, register_op

_BINARY_DOC = (
    "Elementwise ``{name}`` of two broadcast tensors, or of a tensor and ``scalar`` "
    "(``reverse=True``: the scalar is the left operand)."
)
_ATEN_BINARY_DOC = (
    "Elementwise ``{name}`` (``jnp.{fn}``) of two broadcast tensors, or of "
    "a tensor and ``scalar`` (``reverse=True``: the scalar is the left operand)."
)


def _unary(name: str, fn: Callable[[jax.Array], jax.Array], doc: str) -> None:
    def op(params: Params, x: jax.Array) -> jax.Array:
        del params
        return fn(x)

    op.__doc__ = doc
    register_op(name)(op)


# --- arithmetic (add, sub, mul, div) ------------------------------------------------------

_ARITHMETIC: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("add", jnp.add),
    ("sub", jnp.subtract),
    ("mul", jnp.multiply),
    ("div", jnp.true_divide),
)

# --- torch's Core ATen opset --------------------------------------------------------------

_ATEN_UNARY: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("tan", jnp.tan),
    ("asin", jnp.arcsin),
    ("acos", jnp.arccos),
    ("atan", jnp.arctan),
    ("sinh", jnp.sinh),
    ("cosh", jnp.cosh),
    ("asinh", jnp.arcsinh),
    ("acosh", jnp.arccosh),
    ("atanh", jnp.arctanh),
    ("trunc", jnp.trunc),
    ("log2", jnp.log2),
    ("log10", jnp.log10),
)
_ATEN_BINARY: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("atan2", jnp.arctan2),
    ("fmod", jnp.fmod),
    ("floor_divide", jnp.floor_divide),
    ("bitwise_and", jnp.bitwise_and),
    ("bitwise_or", jnp.bitwise_or),
    ("bitwise_xor", jnp.bitwise_xor),
    ("fmax", jnp.fmax),
    ("fmin", jnp.fmin),
    ("hypot", jnp.hypot),
)

# --- the lax primitives of JAX programs ---------------------------------------------------

_LAX_UNARY: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("neg", lax.neg),
    ("exp", lax.exp),
    ("log", lax.log),
    ("log1p", lax.log1p),
    ("expm1", lax.expm1),
    ("erf", lax.erf),
    ("erfc", lax.erfc),
    ("rsqrt", lax.rsqrt),
    ("sqrt", lax.sqrt),
    ("abs", lax.abs),
    ("sign", lax.sign),
    ("floor", lax.floor),
    ("ceil", lax.ceil),
    ("round", jnp.round),
    ("square", lax.square),
    ("sin", lax.sin),
    ("cos", lax.cos),
    ("not", lax.bitwise_not),
    ("is_finite", lax.is_finite),
)
_LAX_BINARY: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("maximum", jnp.maximum),
    ("minimum", jnp.minimum),
    ("pow", jnp.power),
    ("rem", jnp.remainder),
    ("eq", jnp.equal),
    ("ne", jnp.not_equal),
    ("lt", jnp.less),
    ("le", jnp.less_equal),
    ("gt", jnp.greater),
    ("ge", jnp.greater_equal),
    ("and", jnp.logical_and),
    ("or", jnp.logical_or),
    ("xor", jnp.logical_xor),
)


def _register_all() -> None:
    for name, fn in _ARITHMETIC + _LAX_BINARY:
        register_op(name)(binary(fn, _BINARY_DOC.format(name=name)))
    for name, fn in _ATEN_UNARY:
        _unary(name, fn, f"Elementwise ``{name}`` (``jnp.{fn.__name__}``).")
    for name, fn in _ATEN_BINARY:
        register_op(name)(binary(fn, _ATEN_BINARY_DOC.format(name=name, fn=fn.__name__)))
    for name, fn in _LAX_UNARY:
        _unary(name, fn, f"Elementwise ``{name}``.")


_register_all()


@register_op("integer_pow")
def integer_pow(params: Params, x: jax.Array, *, y: int) -> jax.Array:
    """``x ** y`` for a static integer ``y`` (``lax.integer_pow``)."""
    return lax.integer_pow(x, y)
