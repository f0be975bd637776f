"""Shift-negative correction (MCT's ``apply_shift_negative_correction``) on hand-built jq
graphs (torch-free).

MCT parity of the whole rewrite (exported model equal to MCT's) is in
``tests/torch/test_ptq_torch.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import jq.core
from jq import Graph, Node, apply
from jq._src.ptq.snc import NON_LINEAR_BITS, plan_shifts, shift_value, shifted_bias
from jq.ptq import quantize_graph

PAD1 = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1)
POOL = dict(
    kernel_size=(2, 2),
    stride=(2, 2),
    padding=(0, 0),
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
)


def _net(seed=0):
    """x -> c1 -> silu (large range: SNC) -> avg_pool -> c2 (padded) -> hardswish (small range:
    no SNC) -> reshape -> fc."""
    r = np.random.default_rng(seed)
    g = Graph(
        inputs=("x",),
        nodes=(
            Node("c1", "conv", ("x",), PAD1),
            Node("a1", "silu", ("c1",)),
            Node("pool", "avg_pool", ("a1",), POOL),
            Node("c2", "conv", ("pool",), PAD1),
            Node("a2", "hardswish", ("c2",)),
            Node("flat", "reshape", ("a2",), {"shape": (-1, 4 * 3 * 3)}),
            Node("fc", "linear", ("flat",)),
        ),
        outputs=("fc",),
    )
    f32 = np.float32
    p = {
        "c1": {
            "weight": (r.standard_normal((4, 3, 3, 3)) * 1.5).astype(f32),
            "bias": r.standard_normal(4).astype(f32),
        },
        "c2": {"weight": (r.standard_normal((4, 4, 3, 3)) * 0.02).astype(f32)},
        "fc": {
            "weight": r.standard_normal((5, 36)).astype(f32),
            "bias": r.standard_normal(5).astype(f32),
        },
    }
    xs = [r.standard_normal((8, 3, 6, 6)).astype(f32) for _ in range(3)]
    return g, p, xs


def _quantize(compat=False, **kw):
    g, p, xs = _net()
    qc = jq.core.QuantizationConfig(mct_compat=compat, **kw)
    cfg = jq.core.CoreConfig(quantization_config=qc, progress=False)
    return g, p, xs, quantize_graph(g, p, lambda: ([x] for x in xs), core_config=cfg)


def test_shift_value_is_the_smallest_grid_point_covering_the_minimum():
    assert shift_value(-0.278, 16.0, 8) == 0.3125  # 16/256 = 0.0625: 5 steps
    assert shift_value(-0.25, 16.0, 8) == 0.25  # on the grid
    assert shift_value(-0.001, 1.0, 4) == 0.0625
    assert shift_value(-20.0, 16.0, 8) == 0.0  # nothing covers it: MCT's argmin of all-inf


def test_plan_shifts_conditions():
    g, _, _ = _net()
    kw = dict(quantized={"a1", "a2", "pool"}, n_bits=8, ratio=0.05)
    (sh,) = plan_shifts(
        g, minimum={"a1": -0.27, "a2": -0.3}, thresholds={"a1": 16.0, "a2": 4.0}, **kw
    )
    assert (sh.value, sh.layer, sh.bypass, sh.threshold) == ("a1", "c2", ("pool",), 16.0)
    # a2 feeds fc through a reshape: applies once its ratio is small enough.
    both = plan_shifts(
        g, minimum={"a1": -0.27, "a2": -0.3}, thresholds={"a1": 16.0, "a2": 16.0}, **kw
    )
    assert [(s.value, s.layer, s.bypass) for s in both] == [
        ("a1", "c2", ("pool",)),
        ("a2", "fc", ("flat",)),
    ]
    # Not negative, ratio too large, uniform range, not quantized: no shift.
    assert (
        plan_shifts(g, minimum={"a1": 0.0, "a2": 0.0}, thresholds={"a1": 16.0, "a2": 16.0}, **kw)
        == ()
    )
    assert (
        plan_shifts(g, minimum={"a1": -1.0, "a2": -1.0}, thresholds={"a1": 16.0, "a2": 16.0}, **kw)
        == ()
    )
    assert (
        plan_shifts(g, minimum={"a1": -0.2, "a2": -0.2}, thresholds={"a1": None, "a2": None}, **kw)
        == ()
    )
    kw["quantized"] = set()
    assert (
        plan_shifts(g, minimum={"a1": -0.2, "a2": -0.2}, thresholds={"a1": 16.0, "a2": 16.0}, **kw)
        == ()
    )
    # Two readers: no single layer to correct.
    two = g.replace(nodes=g.nodes + (Node("extra", "relu", ("a1",)),), outputs=("fc", "extra"))
    kw["quantized"] = {"a1"}
    assert plan_shifts(two, minimum={"a1": -0.2}, thresholds={"a1": 16.0}, **kw) == ()


def test_shifted_bias_keeps_the_layer_output():
    r = np.random.default_rng(1)
    w = r.standard_normal((3, 2, 3, 3)).astype(np.float32)
    b = r.standard_normal(3).astype(np.float32)
    x = r.standard_normal((2, 2, 5, 5)).astype(np.float32)
    from jq._src.graph.ops import get_op

    conv = get_op("conv")
    attrs = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1)
    want = conv({"weight": w, "bias": b}, x, **attrs)
    got = conv({"weight": w, "bias": shifted_bias("conv", w, b, 0.75)}, x + 0.75, **attrs)
    np.testing.assert_allclose(got, want, atol=1e-5)
    wl = r.standard_normal((4, 6)).astype(np.float32)
    xl = r.standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_allclose(
        (xl + 0.5) @ wl.T + shifted_bias("linear", wl, None, 0.5), xl @ wl.T, atol=1e-5
    )


def test_snc_rewrites_the_quantized_graph():
    g, p, xs, res = _quantize()
    ops = {n.name: n for n in res.graph.nodes}
    layers = {(li.name, li.kind): li for li in res.info.layers}
    a1, add = layers[("a1", "activation")], layers[("a1_post_add", "activation")]
    assert a1.n_bits == NON_LINEAR_BITS and a1.signed
    assert (add.n_bits, add.signed, add.threshold) == (8, False, a1.threshold)
    assert layers[("a2", "activation")].n_bits == 8  # small range: no shift
    assert not layers[("pool", "activation")].signed  # bypass value: now non-negative
    shift = ops["a1_post_add"].attr("scalar")
    m = min(float(np.min(apply(g, p, x, capture=("a1",))[1]["a1"])) for x in xs)
    assert shift == shift_value(m, a1.threshold, 8) and shift > 0
    # x -> ... a1.act_quant (16 bits) -> add -> quantizer -> pool -> quantizer -> pad -> c2
    assert ops["a1_post_add"].inputs == ("a1.act_quant",)
    assert ops["pool"].inputs == ("a1_post_add.act_quant",)
    assert ops["c2_pre_pad"].inputs == ("pool.act_quant",)
    assert ops["c2_pre_pad"].attrs_dict == {"padding": ((1, 1), (1, 1)), "value": shift}
    assert ops["c2"].inputs == ("c2_pre_pad",) and ops["c2"].attr("padding") == ((0, 0), (0, 0))
    assert any("shift-negative correction: 1 values: a1" in n for n in res.info.notes)


def test_snc_is_exact_without_quantization():
    """Quantizers replaced by identities and float kernels: the rewritten graph computes the
    float model (the shift, the bias fold and the shifted padding cancel)."""
    g, p, xs, res = _quantize(weights_bias_correction=False)
    qg = _identity_quantizers(res.graph)
    qp = {k: dict(v) for k, v in res.params.items()}
    for k in ("c1", "c2", "fc"):
        qp[k]["weight"] = p[k]["weight"]
    assert not np.allclose(qp["c2"]["bias"], 0)  # the fold created a bias
    for x in xs:
        np.testing.assert_allclose(apply(qg, qp, x), apply(g, p, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("compat", [False, True])
def test_snc_off_and_on(compat):
    *_, off = _quantize(compat, shift_negative_activation_correction=False)
    assert all(n.op not in ("add", "pad") for n in off.graph.nodes)
    assert "shift-negative correction: off" in off.info.notes
    *_, on = _quantize(compat)
    assert sum(n.op == "pad" for n in on.graph.nodes) == 1


def _identity_quantizers(graph):
    return graph.replace(
        nodes=tuple(
            n.replace(op="cast", attrs={"dtype": "float32"}) if n.op == "fake_quant" else n
            for n in graph.nodes
        )
    )


def test_default_bias_correction_uses_the_shifted_mean():
    """Default-mode fix: the corrected layer reads ``x + shift``, so its kernel's quantization
    error has mean ``eps @ (mean + shift)``; MCT (compat) corrects with the unshifted mean and
    leaves ``shift * sum(eps)`` per channel. x -> silu -> 1x1 conv, activation quantizers off:
    default's bias correction cancels the mean error, compat's leaves exactly that term."""
    r = np.random.default_rng(3)
    one = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1)
    g = Graph(("x",), (Node("a", "silu", ("x",)), Node("c", "conv", ("a",), one)), ("c",))
    p = {"c": {"weight": r.standard_normal((6, 4, 1, 1)).astype(np.float32)}}
    xs = [(r.standard_normal((8, 4, 5, 5)) * 4).astype(np.float32) for _ in range(2)]
    errs = {}
    for compat in (False, True):
        qc = jq.core.QuantizationConfig(mct_compat=compat)
        cfg = jq.core.CoreConfig(quantization_config=qc, progress=False)
        res = quantize_graph(g, p, lambda: ([x] for x in xs), core_config=cfg)
        assert any(n.op == "add" for n in res.graph.nodes)
        qg = _identity_quantizers(res.graph)
        err = 0.0
        for x in xs:
            f = np.asarray(apply(g, p, x), np.float64)
            err = err + np.mean(np.asarray(apply(qg, res.params, x)) - f, axis=(0, 2, 3))
        errs[compat] = np.abs(err / len(xs))
    assert np.max(errs[False]) < 1e-5, errs
    assert np.max(errs[True]) > 1e-4, errs
