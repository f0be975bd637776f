"""``fake_quant``: quantize-dequantize as a deployed quantizer computes it; ``ptq_gate``: the
PTQ probe's switchable quantizer (``jq/_src/ptq/probe.py``; never exported)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ...select.quantizers import affine_fake_quant
from .registry import Params, register_op


@register_op("fake_quant")
def fake_quant(params: Params, x: jax.Array) -> jax.Array:
    """Quantize-dequantize ``x``: ``clip(round(x * (1/scale)), q_min, q_max) * scale``.

    params: ``scale`` (> 0), ``q_min``, ``q_max`` (integer-valued levels, zero point folded
    in): scalars, or arrays of x's rank for per-channel grids. Bit for bit what
    ``torch.fake_quantize_per_tensor_affine`` computes with zero point 0.
    """
    return affine_fake_quant(x, params["scale"], params["q_min"], params["q_max"])


GATE_OP = "ptq_gate"


@register_op(GATE_OP)
def ptq_gate(params: Params, x: jax.Array) -> jax.Array:
    """``fake_quant`` where ``params["on"] > 0``, else ``x`` unchanged: the probe program's
    quantizer, whose grid and switch are operands (one program for float and quantized runs)."""
    q = affine_fake_quant(x, params["scale"], params["q_min"], params["q_max"])
    return jnp.where(params["on"] > 0, q, x)
