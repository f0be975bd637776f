"""Hooks the PTQ passes insert into graphs they build for themselves: never quantized, never
exported (the ONNX writer refuses them, naming why).

- ``ptq_perturb`` (statistics with ``hmse``, ``jq/_src/ptq/calibrate.py``) and
  ``ptq_hessian_probe`` (Hessian scores of kernels, ``jq/_src/ptq/hessian.py``): ``x + delta``,
  a zero-valued hook whose cotangent is that of ``x``.
- ``ptq_hessian_conv``: a one-group ``conv`` as patches and one dot, for the small output maps
  of the Hessian scoring graph, where XLA:CPU's convolution (and its transposes) is slow.

The probe's ``ptq_gate`` is a quantizer: it lives in ``quantization.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .layers import Pads, conv_windows
from .registry import Params, register_op

PERTURB_OP = "ptq_perturb"
HESSIAN_PROBE_OP = "ptq_hessian_probe"
HESSIAN_CONV_OP = "ptq_hessian_conv"


@register_op(PERTURB_OP)
def _ptq_perturb(params: Params, x: jax.Array) -> jax.Array:
    """``x + params["delta"]``: a zero-valued hook; its gradient is the gradient w.r.t. ``x``
    (used for Hessian scores of activations). Without ``delta`` it is the identity. Not
    quantized, never exported."""
    return x + params["delta"] if "delta" in params else x


@register_op(HESSIAN_PROBE_OP)
def _probe(params: Params, x: jax.Array) -> jax.Array:
    """``x + params["delta"]``: a zero-valued hook; the cotangent of ``delta`` is that of the
    layer output ``x``. Only in graphs built by ``hessian.weight_scores``."""
    return x + params["delta"]


def conv_patches(
    x: jax.Array,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Pads,
    dilation: Sequence[int],
) -> jax.Array:
    """Patches of ``x`` (N, C, *spatial) for a conv: (N, C, taps, *out), taps in row-major
    kernel order (matching ``weight.reshape(O, C, -1)``)."""
    cols = [window for _, window in conv_windows(x, kernel, stride, padding, dilation)]
    return jnp.stack(cols, axis=2)


@register_op(HESSIAN_CONV_OP)
def _conv_as_dot(
    params: Params,
    x: jax.Array,
    *,
    stride: Sequence[int],
    padding: Pads,
    dilation: Sequence[int],
    groups: int,
) -> jax.Array:
    """``conv`` with one group as patches and one dot (same attrs and result as ``conv``).

    Used for small output maps in graphs built by ``hessian.weight_scores``, where XLA:CPU's
    convolution (and its transposes) is slow."""
    del groups  # always 1 here
    w = params["weight"]
    patches = conv_patches(x, w.shape[2:], stride, padding, dilation)
    y = jnp.einsum("nct...,oct->no...", patches, jnp.reshape(w, w.shape[:2] + (-1,)))
    if "bias" in params:
        y = y + jnp.reshape(params["bias"], (1, -1) + (1,) * (y.ndim - 2))
    return y
