"""The jq ops that JAX programs need beyond the PyTorch-shaped vocabulary of
``jq/_src/graph/ops.py``: one op per ``lax`` primitive family, same calling convention
(``fn(params, *inputs, **attrs)``), registered in the same table when ``jq`` is imported.

Vocabulary (attrs in brackets):

- unary: ``neg``, ``exp``, ``log``, ``log1p``, ``expm1``, ``erf``, ``erfc``, ``rsqrt``,
  ``sqrt``, ``abs``, ``sign``, ``floor``, ``ceil``, ``round``, ``square``, ``sin``, ``cos``,
  ``not``, ``is_finite``, ``integer_pow`` [y].
- binary (two broadcast tensors, or a tensor and [scalar, reverse] as ``add``): ``maximum``,
  ``minimum``, ``pow``, ``rem``, ``eq``, ``ne``, ``lt``, ``le``, ``gt``, ``ge``, ``and``,
  ``or``, ``xor``.
- ``reduce_sum`` / ``reduce_max`` / ``reduce_min`` / ``reduce_prod`` [axes]; ``argmax`` /
  ``argmin`` [axis, index_dtype].
- ``select_n`` (which, *cases): ``lax.select_n``.
- ``slice_nd`` [start, limit, strides]; ``dynamic_slice`` (x, *indices) [sizes].
- ``reduce_window`` [computation: "max" | "sum", window, strides, padding ((lo, hi) per axis),
  base_dilation, window_dilation]: pooling on any layout.
- ``dot_general`` (a, b) [dimension_numbers]: a product of two activations (attention).
- ``pad_nd`` [config ((lo, hi, interior) per axis), value].
- ``masked_softmax`` (x, mask) [axis, fill]: ``softmax(where(mask, x, fill))``, attention's
  masked softmax (the fill, e.g. ``finfo.min``, never reaches a quantizer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ..graph.ops import _binary, register_op


def _unary(name: str, fn) -> None:
    def op(params, x):
        del params
        return fn(x)

    op.__doc__ = f"Elementwise ``{name}``."
    register_op(name)(op)


_UNARY_FNS: tuple[tuple[str, Callable[..., Any]], ...] = (
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
_BINARY_FNS: tuple[tuple[str, Callable[..., Any]], ...] = (
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
for _name, _fn in _UNARY_FNS:
    _unary(_name, _fn)
for _name, _fn in _BINARY_FNS:
    register_op(_name)(
        _binary(
            _fn,
            f"Elementwise ``{_name}`` of two broadcast tensors, or of a tensor and ``scalar`` "
            "(``reverse=True``: the scalar is the left operand).",
        )
    )


@register_op("integer_pow")
def integer_pow(params, x, *, y):
    """``x ** y`` for a static integer ``y`` (``lax.integer_pow``)."""
    return lax.integer_pow(x, y)


def _reduce(name: str, fn) -> None:
    def op(params, x, *, axes):
        del params
        return fn(x, axis=tuple(axes))

    op.__doc__ = f"``{name}`` over ``axes`` (a tuple; the axes are removed)."
    register_op(name)(op)


_REDUCE_FNS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("reduce_sum", jnp.sum),
    ("reduce_max", jnp.max),
    ("reduce_min", jnp.min),
    ("reduce_prod", jnp.prod),
)
for _name, _fn in _REDUCE_FNS:
    _reduce(_name, _fn)
del _name, _fn


@register_op("argmax")
def argmax(params, x, *, axis, index_dtype):
    """Index of the largest entry along ``axis`` (removed), as ``index_dtype``."""
    return lax.argmax(x, axis, jax.dtypes.canonicalize_dtype(index_dtype))


@register_op("argmin")
def argmin(params, x, *, axis, index_dtype):
    """Index of the smallest entry along ``axis`` (removed), as ``index_dtype``."""
    return lax.argmin(x, axis, jax.dtypes.canonicalize_dtype(index_dtype))


@register_op("select_n")
def select_n(params, which, *cases):
    """``cases[which]`` elementwise (``which`` boolean or integer, the cases' shape)."""
    return lax.select_n(which, *cases)


@register_op("slice_nd")
def slice_nd(params, x, *, start, limit, strides):
    """``lax.slice``: ``x[start[0]:limit[0]:strides[0], ...]`` on every axis."""
    return lax.slice(x, start, limit, strides)


@register_op("dynamic_slice")
def dynamic_slice(params, x, *indices, sizes):
    """``lax.dynamic_slice(x, indices, sizes)``: one scalar index input per axis."""
    return lax.dynamic_slice(x, indices, sizes)


@register_op("reduce_window")
def reduce_window(
    params, x, *, computation, window, strides, padding, base_dilation, window_dilation
):
    """Pooling on any layout: ``lax.reduce_window`` with max (padding -inf) or sum (zeros).

    Args:
      x: any rank; ``window``, ``strides``, ``base_dilation``, ``window_dilation`` one int per
        axis of x; ``padding`` one ``(lo, hi)`` per axis.
      computation: ``"max"`` or ``"sum"``.
    """
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    # Python scalar inits let JAX pick reduce_window_max / _sum, which have VJPs (HMSE scores).
    if computation == "max":
        init = -float("inf") if floating else int(jnp.iinfo(x.dtype).min)
        reducer = lax.max
    elif computation == "sum":
        init, reducer = (0.0 if floating else 0), lax.add
    else:
        raise ValueError(f"reduce_window: computation must be 'max' or 'sum', got {computation!r}")
    return lax.reduce_window(
        x,
        init,
        reducer,
        tuple(window),
        tuple(strides),
        tuple(tuple(p) for p in padding),
        tuple(base_dilation),
        tuple(window_dilation),
    )


@register_op("dot_general")
def dot_general(params, a, b, *, dimension_numbers):
    """``lax.dot_general(a, b, dimension_numbers)`` of two activations (no kernel)."""
    return lax.dot_general(a, b, dimension_numbers)


@register_op("pad_nd")
def pad_nd(params, x, *, config, value):
    """``lax.pad`` with ``(lo, hi, interior)`` per axis and a constant ``value``."""
    return lax.pad(x, jnp.asarray(value, x.dtype), tuple(tuple(c) for c in config))


@register_op("masked_softmax")
def masked_softmax(params, x, mask, *, axis, fill):
    """``softmax(where(mask, x, fill), axis)``; ``mask`` broadcasts to ``x`` (same rank)."""
    x, mask = jnp.broadcast_arrays(x, mask)
    return jax.nn.softmax(jnp.where(mask, x, jnp.asarray(fill, x.dtype)), axis=axis)
