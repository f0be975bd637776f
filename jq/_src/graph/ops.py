"""The op vocabulary of jq graphs: one pure JAX function per op, in a table.

Every op is called as ``fn(params, *inputs, **attrs)``: ``params`` is the node's entry of the
params pytree (a mapping, empty for ops without params), ``inputs`` are arrays, ``attrs`` the
node's static attributes. Layouts are PyTorch's (data channels-first). Ops broadcast their
operands explicitly, so they run under ``jax_numpy_rank_promotion="raise"``.

Vocabulary (attrs in brackets; ``params`` in braces):

- ``constant`` {value}: a tensor that is not a layer weight (class token, layer scale, ...).
- ``conv`` [stride, padding ((lo, hi) per spatial dim), dilation, groups] {weight, bias?}: N-d.
- ``conv_transpose`` [stride, padding, output_padding, dilation, groups] {weight, bias?}.
- ``linear`` {weight (out, in), bias?}; ``matmul`` (a, b): ``torch.matmul`` semantics (bmm).
- ``batch_norm`` [eps] {weight?, bias?, running_mean, running_var}: inference form.
- ``layer_norm`` [normalized_shape, eps] {weight?, bias?}; ``group_norm`` [num_groups, eps].
- activations: ``relu``, ``relu6``, ``hardtanh`` [min_val, max_val], ``leaky_relu``
  [negative_slope], ``gelu`` [approximate: "none" | "tanh"], ``silu``, ``hardswish``,
  ``hardsigmoid``, ``sigmoid``, ``tanh``, ``softmax`` [axis].
- pooling: ``max_pool`` [kernel_size, stride, padding, dilation, ceil_mode], ``avg_pool``
  [kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override],
  ``adaptive_avg_pool`` [output_size].
- arithmetic: ``add``, ``sub``, ``mul``, ``div``: two tensors (broadcast), or one tensor and
  [scalar, reverse] (``reverse=True`` puts the scalar on the left: ``scalar - x``).
- shapes: ``cat`` [axis], ``reshape`` [shape], ``permute`` [dims], ``expand`` [shape],
  ``slice`` [axis, start, stop, step], ``select`` [axis, index], ``mean`` [axis, keepdims],
  ``cast`` [dtype].
- ``scaled_dot_product_attention`` (q, k, v, mask?) [is_causal, scale].
- ``embedding`` (indices) {weight}.
- more math: ``tan``, ``asin``, ``acos``, ``atan``, ``sinh``, ``cosh``, ``asinh``, ``acosh``,
  ``atanh``, ``trunc``, ``log2``, ``log10``; binary as ``add``: ``atan2``, ``fmod``,
  ``floor_divide``, ``bitwise_and``, ``bitwise_or``, ``bitwise_xor``, ``fmax``, ``fmin``,
  ``hypot``; ``einsum`` [equation] (*operands); activations ``elu``
  [alpha, scale, input_scale], ``softplus`` [beta, threshold], ``mish``, ``log_softmax`` [axis].
- ``fake_quant`` {scale, q_min, q_max}: quantize-dequantize as a deployed quantizer computes
  it, ``clip(round(x * (1/scale)), q_min, q_max) * scale`` (``torch.fake_quantize_*``'s
  arithmetic; ``jq._src.select.quantizers.affine_grid`` gives the three values of a threshold
  or range).

Add an op with ``@register_op("name")``; the name must be new unless ``override=True``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..select.quantizers import affine_fake_quant

OpFn = Callable[..., jax.Array]

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


def _per_channel(v: jax.Array, ndim: int) -> jax.Array:
    return jnp.reshape(v, (1, -1) + (1,) * (ndim - 2))


def _same_rank(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Prepend unit axes so ``a`` and ``b`` broadcast under rank-promotion 'raise'."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.ndim < b.ndim:
        a = jnp.reshape(a, (1,) * (b.ndim - a.ndim) + a.shape)
    elif b.ndim < a.ndim:
        b = jnp.reshape(b, (1,) * (a.ndim - b.ndim) + b.shape)
    return a, b


# --- tensors, linear layers ---------------------------------------------------------------


@register_op("constant")
def constant(params):
    """A stored tensor, ``params["value"]``; no inputs."""
    return params["value"]


@register_op("linear")
def linear(params, x):
    """``x @ weight.T + bias``: x (..., in), weight (out, in), bias (out,) -> (..., out)."""
    y = jnp.matmul(x, params["weight"].T)
    if "bias" in params:
        y = y + jnp.reshape(params["bias"], (1,) * (y.ndim - 1) + (-1,))
    return y


@register_op("matmul")
def matmul(params, a, b):
    """``torch.matmul`` semantics: 1-D operands, batched and broadcast batch dims (bmm)."""
    del params
    return jnp.matmul(a, b)


def _spatial_dn(nd: int) -> tuple[str, str, str]:
    sp = "DHW"[-nd:] if nd <= 3 else None
    if sp is None:
        raise ValueError(f"conv: {nd}-d convolution is not supported (1 to 3 spatial dims)")
    return ("NC" + sp, "OI" + sp, "NC" + sp)


def _depthwise(x, w, stride, padding, dilation):
    """Depthwise convolution (one filter per channel) as a sum over kernel taps of strided
    slices times per-channel weights.

    XLA:CPU lowers feature-grouped convolutions poorly: 210 ms against torch's 5.5 ms for a
    3x3 depthwise conv on (8, 144, 56, 56), one thread; this form fuses into one loop and takes
    5.5 ms. The loop is over the (static, small) kernel taps, not over channels.
    """
    nd = w.ndim - 2
    xp = lax.pad(
        x, jnp.array(0, x.dtype), ((0, 0, 0), (0, 0, 0)) + tuple((lo, hi, 0) for lo, hi in padding)
    )
    kernel = w.shape[2:]
    out = [
        (n - d * (k - 1) - 1) // s + 1
        for n, k, s, d in zip(xp.shape[2:], kernel, stride, dilation, strict=True)
    ]
    y = None
    for tap in itertools.product(*(range(k) for k in kernel)):
        start = [t * d for t, d in zip(tap, dilation, strict=True)]
        limit = [b + (o - 1) * s + 1 for b, o, s in zip(start, out, stride, strict=True)]
        window = lax.slice(xp, [0, 0, *start], [*xp.shape[:2], *limit], [1, 1, *stride])
        term = window * jnp.reshape(w[(slice(None), 0) + tap], (1, -1) + (1,) * nd)
        y = term if y is None else y + term
    return y


@register_op("conv")
def conv(params, x, *, stride, padding, dilation, groups):
    """N-d convolution (cross-correlation), PyTorch semantics.

    Args:
      params: weight (out, in/groups, *kernel); optional bias (out,).
      x: (N, in, *spatial).
      stride, dilation: one int per spatial dim.
      padding: one ``(lo, hi)`` pair per spatial dim (zeros).
      groups: feature groups (``groups == in`` is depthwise).

    Returns:
      (N, out, *spatial_out).
    """
    w = params["weight"]
    if groups > 1 and groups == x.shape[1] == w.shape[0] and w.shape[1] == 1:
        y = _depthwise(x, w, stride, padding, dilation)
    else:
        y = lax.conv_general_dilated(
            x,
            w,
            window_strides=tuple(stride),
            padding=tuple(tuple(p) for p in padding),
            rhs_dilation=tuple(dilation),
            feature_group_count=groups,
            dimension_numbers=_spatial_dn(w.ndim - 2),
        )
    if "bias" in params:
        y = y + _per_channel(params["bias"], y.ndim)
    return y


@register_op("conv_transpose")
def conv_transpose(params, x, *, stride, padding, output_padding, dilation, groups):
    """N-d transposed convolution, PyTorch semantics (the gradient of ``conv``).

    Args:
      params: weight (in, out/groups, *kernel); optional bias (out,).
      x: (N, in, *spatial).
      stride, padding, output_padding, dilation: one int per spatial dim, meaning what they
        mean in ``torch.nn.ConvTranspose2d``.
      groups: feature groups.

    Returns:
      (N, out, *spatial_out), ``out_i = (in_i-1)*stride - 2*padding + dilation*(k-1)
      + output_padding + 1``.
    """
    w = params["weight"]
    nd = w.ndim - 2
    cin, cout_g, *k = w.shape
    # As a direct conv: swap in/out within each group and flip the kernel.
    w = jnp.reshape(w, (groups, cin // groups, cout_g, *k))
    w = jnp.swapaxes(w, 1, 2).reshape((groups * cout_g, cin // groups, *k))
    w = jnp.flip(w, axis=tuple(range(2, 2 + nd)))
    pads = tuple(
        (d * (kk - 1) - p, d * (kk - 1) - p + op)
        for kk, p, op, d in zip(k, padding, output_padding, dilation, strict=True)
    )
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=(1,) * nd,
        padding=pads,
        lhs_dilation=tuple(stride),
        rhs_dilation=tuple(dilation),
        feature_group_count=groups,
        dimension_numbers=_spatial_dn(nd),
    )
    if "bias" in params:
        y = y + _per_channel(params["bias"], y.ndim)
    return y


@register_op("embedding")
def embedding(params, indices):
    """Rows of ``params["weight"]`` (num, dim) at integer ``indices``; returns (*indices, dim)."""
    return jnp.take(params["weight"], indices, axis=0)


# --- normalization ------------------------------------------------------------------------


@register_op("batch_norm")
def batch_norm(params, x, *, eps):
    """Inference batch norm over axis 1: ``(x - mean) / sqrt(var + eps) * weight + bias``."""
    scale = lax.rsqrt(params["running_var"] + eps)
    if "weight" in params:
        scale = scale * params["weight"]
    shift = -params["running_mean"] * scale
    if "bias" in params:
        shift = shift + params["bias"]
    return x * _per_channel(scale, x.ndim) + _per_channel(shift, x.ndim)


def _affine(params, y, axes_shape):
    if "weight" in params:
        y = y * jnp.reshape(params["weight"], axes_shape)
    if "bias" in params:
        y = y + jnp.reshape(params["bias"], axes_shape)
    return y


@register_op("layer_norm")
def layer_norm(params, x, *, normalized_shape, eps):
    """Normalize over the last ``len(normalized_shape)`` axes (biased variance), then affine."""
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    xc = x - mean
    var = jnp.mean(xc * xc, axis=axes, keepdims=True)
    y = xc * lax.rsqrt(var + eps)
    return _affine(params, y, (1,) * (x.ndim - len(axes)) + tuple(normalized_shape))


@register_op("group_norm")
def group_norm(params, x, *, num_groups, eps):
    """Group norm of x (N, C, *spatial): statistics per (sample, group of C/num_groups)."""
    n, c = x.shape[:2]
    g = jnp.reshape(x, (n, num_groups, -1))
    mean = jnp.mean(g, axis=2, keepdims=True)
    gc = g - mean
    var = jnp.mean(gc * gc, axis=2, keepdims=True)
    y = jnp.reshape(gc * lax.rsqrt(var + eps), x.shape)
    return _affine(params, y, (1, c) + (1,) * (x.ndim - 2))


# --- activations --------------------------------------------------------------------------


@register_op("relu")
def relu(params, x):
    """``max(x, 0)``."""
    return jnp.maximum(x, 0)


@register_op("hardtanh")
def hardtanh(params, x, *, min_val, max_val):
    """``clip(x, min_val, max_val)``."""
    return jnp.clip(x, min_val, max_val)


@register_op("relu6")
def relu6(params, x):
    """``clip(x, 0, 6)``: ``hardtanh`` with fixed bounds, kept as its own name because PTQ
    target platforms treat ReLU6 as a known activation."""
    return hardtanh(params, x, min_val=0.0, max_val=6.0)


@register_op("leaky_relu")
def leaky_relu(params, x, *, negative_slope):
    """``x if x >= 0 else negative_slope * x``."""
    return jnp.where(x >= 0, x, negative_slope * x)


@register_op("gelu")
def gelu(params, x, *, approximate="none"):
    """GELU, exact (erf, ``approximate="none"``) or the tanh approximation (``"tanh"``)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return jax.nn.gelu(x, approximate=approximate == "tanh")


@register_op("silu")
def silu(params, x):
    """``x * sigmoid(x)``."""
    return jax.nn.silu(x)


@register_op("hardsigmoid")
def hardsigmoid(params, x):
    """``relu6(x + 3) / 6``."""
    return jnp.clip(x + 3.0, 0.0, 6.0) / 6.0


@register_op("hardswish")
def hardswish(params, x):
    """``x * relu6(x + 3) / 6``."""
    return x * hardsigmoid(params, x)


@register_op("sigmoid")
def sigmoid(params, x):
    """``1 / (1 + exp(-x))``."""
    return jax.nn.sigmoid(x)


@register_op("tanh")
def tanh(params, x):
    """Hyperbolic tangent."""
    return jnp.tanh(x)


@register_op("softmax")
def softmax(params, x, *, axis):
    """Softmax along ``axis``."""
    return jax.nn.softmax(x, axis=axis)


# --- pooling ------------------------------------------------------------------------------


def _pool_pads(size, kernel, stride, padding, dilation, ceil_mode):
    """``(lo, hi)`` padding per spatial dim, with the extra high padding of ``ceil_mode``."""
    pads = []
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True):
        span = n + 2 * p - d * (k - 1) - 1
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= n + p:  # torch: the last window must start inside
            out -= 1
        pads.append((p, (out - 1) * s + d * (k - 1) + 1 - n - p))
    return pads


@register_op("max_pool")
def max_pool(params, x, *, kernel_size, stride, padding, dilation, ceil_mode):
    """N-d max pooling of x (N, C, *spatial); padding is -inf; torch ``ceil_mode`` rule."""
    pads = _pool_pads(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    # A Python scalar init lets JAX pick reduce_window_max, which has a VJP (HMSE scores).
    init = -float("inf") if jnp.issubdtype(x.dtype, jnp.floating) else int(jnp.iinfo(x.dtype).min)
    return lax.reduce_window(
        x,
        init,
        lax.max,
        (1, 1) + tuple(kernel_size),
        (1, 1) + tuple(stride),
        ((0, 0), (0, 0)) + tuple(pads),
        window_dilation=(1, 1) + tuple(dilation),
    )


def _window_counts(n, k, s, p, hi, include_pad):
    """Per output position, how many elements torch's avg_pool divides by (one dim)."""
    out = (n + p + hi - k) // s + 1
    starts = np.arange(out) * s - p
    lo_bound, hi_bound = (-p, n + p) if include_pad else (0, n)
    return np.minimum(starts + k, hi_bound) - np.maximum(starts, lo_bound)


@register_op("avg_pool")
def avg_pool(
    params, x, *, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
):
    """N-d average pooling of x (N, C, *spatial), torch's divisor rules.

    With ``count_include_pad`` the divisor counts zero padding but not the overhang that
    ``ceil_mode`` adds; ``divisor_override`` (int or None) replaces the divisor.
    """
    nd = len(kernel_size)
    pads = _pool_pads(x.shape[2:], kernel_size, stride, padding, (1,) * nd, ceil_mode)
    total = lax.reduce_window(
        x,
        0.0 if jnp.issubdtype(x.dtype, jnp.floating) else 0,
        lax.add,
        (1, 1) + tuple(kernel_size),
        (1, 1) + tuple(stride),
        ((0, 0), (0, 0)) + tuple(pads),
    )
    if divisor_override:
        return total / divisor_override
    counts = avg_pool_divisor(
        x.shape[2:],
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
    )
    return total / jnp.asarray(counts, x.dtype)[None, None]


def avg_pool_divisor(
    spatial, *, kernel_size, stride, padding, ceil_mode, count_include_pad
) -> np.ndarray:
    """What ``avg_pool`` divides each window's sum by: a float32 array of the output's
    spatial shape (torch's rules; no ``divisor_override``)."""
    nd = len(kernel_size)
    pads = _pool_pads(spatial, kernel_size, stride, padding, (1,) * nd, ceil_mode)
    counts = np.ones((), np.float32)
    for n, k, s, (p, hi) in zip(spatial, kernel_size, stride, pads, strict=True):
        c = _window_counts(n, k, s, p, hi, count_include_pad).astype(np.float32)
        counts = np.multiply.outer(counts, c)
    return counts


@register_op("adaptive_avg_pool")
def adaptive_avg_pool(params, x, *, output_size):
    """Adaptive average pooling of x (N, C, *spatial) to ``output_size`` (None keeps a dim).

    Window ``i`` of a dim of length n covers ``[floor(i*n/out), ceil((i+1)*n/out))``. Divisible
    sizes use a reshape-mean; others an averaging matrix (built at trace time).
    """
    nd = len(output_size)
    for j, out in enumerate(output_size):
        axis = x.ndim - nd + j
        n = x.shape[axis]
        out = n if out is None else out
        if n % out == 0:
            x = jnp.mean(
                jnp.reshape(x, x.shape[:axis] + (out, n // out) + x.shape[axis + 1 :]),
                axis=axis + 1,
            )
        else:
            i = np.arange(out)
            start, stop = (i * n) // out, -((-(i + 1) * n) // out)
            cols = np.arange(n)
            m = ((cols >= start[:, None]) & (cols < stop[:, None])) / (stop - start)[:, None]
            x = jnp.moveaxis(
                jnp.tensordot(x, jnp.asarray(m.T, x.dtype), axes=([axis], [0])), -1, axis
            )
    return x


# --- arithmetic ---------------------------------------------------------------------------


def _binary(fn: Callable[[Any, Any], jax.Array], doc: str) -> OpFn:
    def op(params, x, y=None, *, scalar=None, reverse=False):
        if y is None:
            return fn(scalar, x) if reverse else fn(x, scalar)
        return fn(*_same_rank(x, y))

    op.__doc__ = doc
    return op


for _name, _fn in (
    ("add", jnp.add),
    ("sub", jnp.subtract),
    ("mul", jnp.multiply),
    ("div", jnp.true_divide),
):
    register_op(_name)(
        _binary(
            _fn,
            f"Elementwise ``{_name}`` of two broadcast tensors, or of a tensor and ``scalar`` "
            "(``reverse=True``: the scalar is the left operand).",
        )
    )
del _name, _fn


# --- more elementwise math (torch's Core ATen opset) --------------------------------------


def _elementwise(name: str, fn: Callable[[jax.Array], jax.Array]) -> None:
    def op(params, x):
        del params
        return fn(x)

    op.__doc__ = f"Elementwise ``{name}`` (``jnp.{fn.__name__}``)."
    register_op(name)(op)


for _name, _ufn in (
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
):
    _elementwise(_name, _ufn)
for _name, _fn in (
    ("atan2", jnp.arctan2),
    ("fmod", jnp.fmod),
    ("floor_divide", jnp.floor_divide),
    ("bitwise_and", jnp.bitwise_and),
    ("bitwise_or", jnp.bitwise_or),
    ("bitwise_xor", jnp.bitwise_xor),
    ("fmax", jnp.fmax),
    ("fmin", jnp.fmin),
    ("hypot", jnp.hypot),
):
    register_op(_name)(
        _binary(
            _fn,
            f"Elementwise ``{_name}`` (``jnp.{_fn.__name__}``) of two broadcast tensors, or of "
            "a tensor and ``scalar`` (``reverse=True``: the scalar is the left operand).",
        )
    )
del _name, _fn, _ufn


@register_op("einsum")
def einsum(params, *operands, equation):
    """``torch.einsum(equation, *operands)`` of activations (no kernel)."""
    return jnp.einsum(equation, *operands)


@register_op("elu")
def elu(params, x, *, alpha=1.0, scale=1.0, input_scale=1.0):
    """``scale * (x if x > 0 else alpha * (exp(input_scale * x) - 1))``: torch's ELU, and SELU
    and CELU with their constants."""
    neg = alpha * jnp.expm1(input_scale * jnp.minimum(x, 0))
    return scale * jnp.where(x > 0, x, neg)


@register_op("softplus")
def softplus(params, x, *, beta=1.0, threshold=20.0):
    """``log(1 + exp(beta * x)) / beta``, and ``x`` where ``beta * x > threshold`` (torch)."""
    bx = beta * x
    return jnp.where(bx > threshold, x, jnp.logaddexp(bx, 0.0) / beta)


@register_op("mish")
def mish(params, x):
    """``x * tanh(softplus(x))``."""
    return x * jnp.tanh(softplus(params, x))


@register_op("log_softmax")
def log_softmax(params, x, *, axis):
    """``log(softmax(x))`` along ``axis``, computed stably."""
    return jax.nn.log_softmax(x, axis=axis)


# --- shapes -------------------------------------------------------------------------------


@register_op("pad")
def pad(params, x, *, padding, value=0.0):
    """Constant padding of the last ``len(padding)`` axes by ``(lo, hi)`` each (negative crops),
    ``torch.nn.functional.pad``'s ``"constant"`` mode."""
    lead = ((0, 0, 0),) * (x.ndim - len(padding))
    config = lead + tuple((int(lo), int(hi), 0) for lo, hi in padding)
    return lax.pad(x, jnp.asarray(value, x.dtype), config)


@register_op("cat")
def cat(params, *xs, axis):
    """Concatenate along ``axis``."""
    return jnp.concatenate(xs, axis=axis)


@register_op("reshape")
def reshape(params, x, *, shape):
    """Reshape (row-major; one ``-1`` allowed). Also covers view, flatten, (un)squeeze."""
    return jnp.reshape(x, shape)


@register_op("permute")
def permute(params, x, *, dims):
    """Permute axes (``transpose`` of two axes is a permute)."""
    return jnp.transpose(x, dims)


@register_op("expand")
def expand(params, x, like=None, *, shape, like_axes=()):
    """Broadcast to ``shape`` (leading axes may be added). A ``-1`` keeps ``x``'s size on that
    axis, or, for an axis ``i`` of ``like_axes`` ``((i, j), ...)``, takes ``like.shape[j]``
    (a dynamic batch size read from another value, e.g. a class token expanded to the batch)."""
    target = list(shape)
    for i, j in like_axes:
        target[i] = like.shape[j]
    lead = len(target) - x.ndim
    target = [x.shape[i - lead] if d == -1 else d for i, d in enumerate(target)]
    return jnp.broadcast_to(x, tuple(target))


@register_op("slice")
def slice_(params, x, *, axis, start, stop, step):
    """``x[..., start:stop:step, ...]`` on ``axis`` (normalized, non-negative bounds)."""
    return lax.slice_in_dim(x, start, stop, step, axis=axis)


@register_op("select")
def select(params, x, *, axis, index):
    """``x[..., index, ...]`` on ``axis`` (the axis is removed)."""
    return lax.index_in_dim(x, index, axis=axis, keepdims=False)


@register_op("mean")
def mean(params, x, *, axis, keepdims):
    """Mean over ``axis`` (tuple of ints)."""
    return jnp.mean(x, axis=tuple(axis), keepdims=keepdims)


@register_op("cast")
def cast(params, x, *, dtype):
    """Convert to ``dtype`` (a numpy dtype name, e.g. ``"float32"``); 64-bit names map to
    32 bits unless ``jax_enable_x64`` is on."""
    return x.astype(jax.dtypes.canonicalize_dtype(dtype))


# --- attention ----------------------------------------------------------------------------


@register_op("scaled_dot_product_attention")
def scaled_dot_product_attention(params, q, k, v, mask=None, *, is_causal=False, scale=None):
    """``softmax(q @ k^T * scale + mask) @ v`` (torch's F.scaled_dot_product_attention).

    Args:
      q: (..., L, E); k: (..., S, E); v: (..., S, Ev); batch dims broadcast.
      mask: optional, broadcastable to (..., L, S): boolean (True = attend) or additive.
      is_causal: mask out keys after the query position.
      scale: default ``1 / sqrt(E)``.

    Returns:
      (..., L, Ev).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    q, k = _same_rank(q, k)
    s = jnp.einsum("...le,...se->...ls", q, k) * scale
    if is_causal:
        lq, ls = s.shape[-2:]
        s = jnp.where(jnp.tril(jnp.ones((lq, ls), bool)), s, -jnp.inf)
    if mask is not None:
        s, mask = _same_rank(s, mask)
        s = jnp.where(mask, s, -jnp.inf) if mask.dtype == jnp.bool_ else s + mask
    p, v = _same_rank(jax.nn.softmax(s, axis=-1), v)
    return jnp.einsum("...ls,...se->...le", p, v)


# --- quantization -------------------------------------------------------------------------


@register_op("fake_quant")
def fake_quant(params, x):
    """Quantize-dequantize ``x``: ``clip(round(x * (1/scale)), q_min, q_max) * scale``.

    params: ``scale`` (> 0), ``q_min``, ``q_max`` (integer-valued levels, zero point folded
    in): scalars, or arrays of x's rank for per-channel grids. Bit for bit what
    ``torch.fake_quantize_per_tensor_affine`` computes with zero point 0.
    """
    return affine_fake_quant(x, params["scale"], params["q_min"], params["q_max"])
