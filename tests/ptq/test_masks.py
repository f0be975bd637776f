"""Attention-mask constants (``finfo(float32).min`` added before a softmax) get no quantizer,
and a quantized model with non-finite values is never returned."""

from __future__ import annotations

import numpy as np
import pytest

import jq
import jq.core
import jq.ptq
from jq._src.ptq.sqnr import Pair, Sqnr, check_finite

QUIET = jq.core.CoreConfig(progress=False)


def _masked_attention(rng, fill: float):
    """scores = x Wq (x Wk)^T + causal mask (``fill`` above the diagonal); softmax; times x."""
    g = jq.Graph(
        inputs=("x",),
        nodes=(
            jq.Node("q", "linear", ("x",)),
            jq.Node("kt", "permute", ("x",), {"dims": (0, 2, 1)}),
            jq.Node("scores", "matmul", ("q", "kt")),
            jq.Node("mask", "constant"),
            jq.Node("masked", "add", ("scores", "mask")),
            jq.Node("probs", "softmax", ("masked",), {"axis": -1}),
            jq.Node("out", "matmul", ("probs", "x")),
        ),
        outputs=("out",),
    )
    f32 = np.float32
    mask = np.triu(np.full((6, 6), fill, f32), 1)
    params = {
        "q": {"weight": rng.normal(size=(8, 8)).astype(f32), "bias": np.zeros(8, f32)},
        "mask": {"value": mask},
    }
    return g, params


@pytest.mark.parametrize("compat", [False, True])
def test_a_mask_value_gets_no_quantizer_and_outputs_stay_finite(rng, compat):
    g, p = _masked_attention(rng, np.finfo(np.float32).min)
    xs = [rng.normal(size=(4, 6, 8)).astype(np.float32) for _ in range(2)]
    qc = jq.core.QuantizationConfig(mct_compat=compat)
    cfg = jq.core.CoreConfig(quantization_config=qc, progress=False)
    res = jq.ptq.quantize_graph(g, p, lambda: ([x] for x in xs), core_config=cfg)
    acts = {layer.name for layer in res.info.layers if layer.kind == "activation"}
    assert "masked" not in acts and {"scores", "probs", "out"} <= acts
    assert any("mask values left unquantized" in n and "masked" in n for n in res.info.notes)
    y = np.asarray(jq.apply(res.graph, res.params, xs[0]))
    assert np.all(np.isfinite(y))
    assert np.isfinite(res.info.output_sqnr_db) and res.info.output_sqnr_db > 15


def test_a_moderate_additive_constant_is_still_quantized(rng):
    g, p = _masked_attention(rng, -30.0)  # a large bias, not a mask: the range stays searched
    xs = [rng.normal(size=(4, 6, 8)).astype(np.float32)]
    res = jq.ptq.quantize_graph(g, p, lambda: iter(xs), core_config=QUIET)
    assert "masked" in {layer.name for layer in res.info.layers if layer.kind == "activation"}


def test_non_finite_quantized_values_are_refused():
    sq = Sqnr({Pair("a", "a.q"): 30.0, Pair("b", "b.q"): float("nan")}, float("nan"))
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\) at \['b'\]"):
        check_finite(sq, "fn")
    check_finite(Sqnr({Pair("a", "a.q"): float("inf")}, 40.0), "fn")  # no noise: fine
