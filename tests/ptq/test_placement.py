"""The quantizer plan (``jq/_src/ptq/placement/``): one record, made by ``place``, read by
every later pass; the masks pass is its only later decision."""

from __future__ import annotations

import pytest

import jq
import jq.core
from jq import Graph, Node
from jq._src.ptq.calibrate import Statistics
from jq._src.ptq.placement import MASK_LEVEL, ActConfig, place, plan_quantization, without_masks
from jq._src.ptq.settings import Settings


def _block() -> Graph:
    """x -> fc (linear) -> ln (layer_norm) -> head (linear): ``fc``'s output feeds a norm."""
    nodes = (
        Node("fc", "linear", ("x",)),
        Node("ln", "layer_norm", ("fc",), {"normalized_shape": (8,), "eps": 1e-5}),
        Node("head", "linear", ("ln",)),
    )
    return Graph(("x",), nodes, ("head",))


def _place(overrides=None, compat=False):
    core = jq.core.CoreConfig(overrides=overrides)
    qc = jq.core.QuantizationConfig(mct_compat=compat)
    return place(_block(), qc=qc, tp=jq.core.TargetPlatform(), rules=core.rules)


def test_plan_holds_every_quantizer_and_only_those():
    g = _block()
    plan = _place()
    platform = plan_quantization(g)
    assert (plan.kernels, plan.activations, plan.fused) == tuple(platform)
    assert list(plan.kernel_configs) == [k for k, _ in plan.kernels] == ["fc", "head"]
    assert list(plan.act_configs) == list(plan.activations) == ["x", "fc", "ln", "head"]
    with pytest.raises(TypeError):  # read only: no pass after placement edits it
        plan.act_configs["x"] = plan.act("fc")  # type: ignore[index]
    assert not hasattr(Settings(None, None, "f", False), "steering")  # type: ignore[arg-type]


def test_policy_then_steering_then_switches_off():
    mse, pot = jq.ErrorMethod.MSE, jq.QuantizationMethod.POWER_OF_TWO
    # jq's default policy: the norm's input at 16 bits (MCT's 8 in compat mode).
    assert _place().act("fc") == ActConfig(mse, 16, pot, 16)
    assert _place(compat=True).act("fc") == ActConfig(mse, 8, pot, 8)
    assert _place().notes == ("normalization inputs at 16 bits: 1 values (fc)",)
    # A rule wins over the policy field by field, and switched-off quantizers leave the plan.
    plan = _place(
        {
            "fc": {"activation_n_bits": 6, "activation_error_method": "mae"},
            "head": {"enable_weights_quantization": False},
            "x": {"enable_activation_quantization": False},
        }
    )
    assert plan.act("fc") == ActConfig(jq.ErrorMethod.MAE, 6, pot, 6)
    assert [k for k, _ in plan.kernels] == list(plan.kernel_configs) == ["fc"]
    assert plan.activations == tuple(plan.act_configs) == ("fc", "ln", "head")
    assert plan.notes[0].startswith("normalization inputs at 16 bits")
    assert plan.notes[1] == (
        "steering: overrides['fc'] -> fc: activation_error_method=mae, activation_n_bits=6"
    )


def test_masks_make_a_new_plan_and_record_the_values():
    plan = _place()
    lo = {"x": -1.0, "fc": -2.0 * MASK_LEVEL, "ln": -3.0, "head": -1.0}
    hi = {v: 1.0 for v in lo}
    final = without_masks(plan, Statistics({}, lo, hi, {}, 1))
    assert final.masks == ("fc",)
    assert final.activations == tuple(final.act_configs) == ("x", "ln", "head")
    assert final.kernel_configs == plan.kernel_configs  # kernels never depend on masks
    assert plan.activations == ("x", "fc", "ln", "head") and plan.masks == ()  # unchanged
    same = without_masks(plan, Statistics({}, dict.fromkeys(lo, -1.0), hi, {}, 1))
    assert same is plan
