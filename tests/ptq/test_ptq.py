"""PTQ pipeline on hand-built jq graphs (torch-free): config, folding, placement, statistics,
bias correction, HMSE scores, bad input, end to end."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from stats_helpers import collect_statistics

import jq
import jq.core
import jq.ptq
from jq import Graph, Node, apply, histogram_finalize, histogram_init, histogram_update
from jq._src.ptq.build import bias_correction as _bias_correction
from jq._src.ptq.fold import fold_batch_norm
from jq._src.ptq.hessian import exact_weight_diag, weight_scores
from jq._src.ptq.placement import plan_quantization
from jq.ptq import quantize_graph

CONV = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1)


def _rng(seed=0):
    return np.random.default_rng(seed)


def small_cnn(seed=0):
    """x (N,2,6,6) -> conv -> bn -> relu -> max_pool -> reshape -> linear -> softmax."""
    r = _rng(seed)
    g = Graph(
        inputs=("x",),
        nodes=(
            Node("conv", "conv", ("x",), CONV),
            Node("bn", "batch_norm", ("conv",), {"eps": 1e-5}),
            Node("relu", "relu", ("bn",)),
            Node(
                "pool",
                "max_pool",
                ("relu",),
                dict(
                    kernel_size=(2, 2),
                    stride=(2, 2),
                    padding=(0, 0),
                    dilation=(1, 1),
                    ceil_mode=False,
                ),
            ),
            Node("flat", "reshape", ("pool",), {"shape": (-1, 4 * 3 * 3)}),
            Node("fc", "linear", ("flat",)),
            Node("sm", "softmax", ("fc",), {"axis": -1}),
        ),
        outputs=("sm",),
    )
    f32 = np.float32
    p = {
        "conv": {
            "weight": r.normal(0, 0.5, (4, 2, 3, 3)).astype(f32),
            "bias": r.normal(0, 0.1, 4).astype(f32),
        },
        "bn": {
            "weight": r.uniform(0.5, 1.5, 4).astype(f32),
            "bias": r.normal(0, 0.2, 4).astype(f32),
            "running_mean": r.normal(0, 0.3, 4).astype(f32),
            "running_var": r.uniform(0.5, 2, 4).astype(f32),
        },
        "fc": {
            "weight": r.normal(0, 0.3, (5, 36)).astype(f32),
            "bias": r.normal(0, 0.1, 5).astype(f32),
        },
    }
    return g, jax.tree_util.tree_map(jnp.asarray, p)


def data(n_batches=3, batch=8, seed=1):
    r = _rng(seed)
    xs = [r.normal(0, 1, (batch, 2, 6, 6)).astype(np.float32) for _ in range(n_batches)]
    return xs, (lambda: ([x] for x in xs))


QUIET = jq.core.CoreConfig(progress=False)

# -- config ---------------------------------------------------------------------------------


def test_config_defaults_are_mcts():
    qc = jq.core.QuantizationConfig()
    assert qc.activation_error_method is jq.core.QuantizationErrorMethod.MSE
    assert qc.weights_error_method is jq.core.QuantizationErrorMethod.MSE
    assert qc.weights_bias_correction and qc.shift_negative_activation_correction
    assert qc.l_p_value == 2 and qc.z_threshold == float("inf") and qc.min_threshold == 2.0**-16
    assert qc.shift_negative_ratio == 0.05 and qc.linear_collapsing and qc.residual_collapsing
    assert qc.mct_compat is False
    assert jq.core.CoreConfig().quantization_config == qc


def test_config_accepts_names_and_rejects_bad_fields():
    qc = jq.core.QuantizationConfig(activation_error_method="kl", weights_error_method="HMSE")
    assert qc.activation_error_method is jq.core.QuantizationErrorMethod.KL
    with pytest.raises(TypeError, match="weights_bias_correction"):
        jq.core.QuantizationConfig(weights_bias_correction="yes")
    with pytest.raises(ValueError, match="activation_error_method"):
        jq.core.QuantizationConfig(activation_error_method="l3")
    with pytest.raises(TypeError, match="l_p_value"):
        jq.core.QuantizationConfig(l_p_value="2")
    with pytest.raises(ValueError, match="min_threshold"):
        jq.core.QuantizationConfig(min_threshold=0.0)
    with pytest.raises(ValueError, match="z_threshold"):
        jq.core.QuantizationConfig(z_threshold=float("nan"))
    with pytest.raises(ValueError, match="input_scaling"):
        jq.core.QuantizationConfig(input_scaling=True)
    with pytest.raises(TypeError, match="mct_compat"):
        jq.core.QuantizationConfig(mct_compat=1)
    with pytest.raises(TypeError, match="quantization_config"):
        jq.core.CoreConfig(quantization_config={"activation_error_method": "mse"})
    with pytest.raises(ValueError, match="activation_n_bits"):
        jq.core.TargetPlatform(activation_n_bits=0)
    with pytest.raises(TypeError):
        jq.core.QuantizationConfig(jq.core.QuantizationErrorMethod.MSE)  # keyword-only


# -- graph rewrites ---------------------------------------------------------------------------


def test_batch_norm_folding_is_exact():
    g, p = small_cnn()
    xs, _ = data(1)
    fg, fp, folded = fold_batch_norm(g, p)
    assert folded == ("bn",) and all(n.op != "batch_norm" for n in fg.nodes)
    assert fg.node("relu").inputs == ("conv",)
    np.testing.assert_allclose(apply(fg, fp, xs[0]), apply(g, p, xs[0]), rtol=1e-5, atol=1e-6)
    assert "bn" in p and p["conv"]["weight"] is not fp["conv"]["weight"]  # input unchanged


def test_placement_follows_mct_default_platform():
    g = Graph(
        inputs=("x",),
        nodes=(
            Node("c1", "conv", ("x",), CONV),
            Node("r1", "relu", ("c1",)),  # fused: c1 unquantized
            Node("c2", "conv", ("r1",), CONV),
            Node("add", "add", ("c2", "r1")),  # c2 has one reader but add is not an activation
            Node("r2", "relu6", ("add",)),  # add -> relu6 fused
            Node("t", "permute", ("r2",), {"dims": (0, 1, 3, 2)}),  # no quantizer
            Node("c3", "conv", ("t",), CONV),
            Node("tanh", "tanh", ("c3",)),
            Node("flat", "reshape", ("tanh",), {"shape": (2, -1)}),
            Node("fc", "linear", ("flat",)),
            Node("th", "tanh", ("fc",)),  # linear -> tanh does not fuse
        ),
        outputs=("th",),
    )
    plan = plan_quantization(g)
    assert plan.kernels == (("c1", 0), ("c2", 0), ("c3", 0), ("fc", 0))
    assert plan.activations == ("x", "r1", "c2", "r2", "tanh", "fc", "th")
    assert dict(plan.fused) == {"c1": "r1", "add": "r2", "c3": "tanh"}


# -- statistics --------------------------------------------------------------------------------


def _relu_graph():
    return Graph(
        ("x",), (Node("r", "relu", ("x",)), Node("m", "mul", ("r",), {"scalar": 2.0})), ("m",)
    )


def test_statistics_compat_equal_numpy_histogram():
    g = _relu_graph()
    x = _rng(2).normal(0, 1, (64, 5)).astype(np.float32)
    st = collect_statistics(
        lambda s: g, {}, [(x,)], hist_names=("x", "r"), mct_compat=True, progress=False
    )
    for name, v in (("x", x), ("r", np.maximum(x, 0))):
        c, e = np.histogram(v.astype(np.float64), bins=2048)
        np.testing.assert_array_equal(st.histograms[name][0], e)
        np.testing.assert_array_equal(st.histograms[name][1], c)
    assert st.minimum["r"] == 0.0 and st.maximum["x"] == float(x.max())


def test_statistics_default_equal_histogram_state():
    g = _relu_graph()
    xs = [_rng(s).normal(0, s + 1, (32, 5)).astype(np.float32) for s in range(3)]
    st = collect_statistics(
        lambda s: g, {}, [(x,) for x in xs], hist_names=("r", "m"), progress=False
    )
    state = histogram_init(2048, dtype=jnp.float32)
    for x in xs:
        state = histogram_update(state, 2 * np.maximum(x, 0))
    e, c = histogram_finalize(state)
    np.testing.assert_array_equal(st.histograms["m"][0], e)
    np.testing.assert_array_equal(st.histograms["m"][1], c)
    assert st.n_batches == 3


def test_statistics_hmse_weights_histograms():
    g = _relu_graph()
    x = _rng(3).normal(0, 1, (16, 5)).astype(np.float32)
    st = collect_statistics(
        lambda s: g, {}, [(x,)], hist_names=("x", "r", "m"), hmse=True, progress=False
    )
    # d sum(v * 2 relu(x)) / d relu = 2 v: scores 4 everywhere -> total weight 4 * count;
    # the output node m gets unit weights.
    np.testing.assert_allclose(np.sum(st.histograms["r"][1]), 4 * x.size, rtol=1e-6)
    np.testing.assert_allclose(np.sum(st.histograms["m"][1]), x.size, rtol=1e-6)


# -- bias correction --------------------------------------------------------------------------


def test_bias_correction_matches_loop():
    r = _rng(4)
    for groups in (1, 2):
        w = r.normal(size=(4, 6 // groups, 3, 3))
        wq = w + r.normal(0, 0.01, w.shape)
        b = r.normal(size=4)
        mean = r.normal(size=6)
        got = _bias_correction("conv", w, wq, b, mean, groups)
        ref = b.copy()
        for o in range(4):
            g = o // (4 // groups)
            for i in range(6 // groups):
                ref[o] -= (wq[o, i] - w[o, i]).sum() * mean[g * (6 // groups) + i]
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    w = r.normal(size=(3, 5))
    wq = w + 0.01
    mean = r.normal(size=5)
    # linear: with the corrected bias, Wq @ mean + b' == W @ mean + b exactly in expectation
    got = _bias_correction("linear", w, wq, None, mean, 1)
    np.testing.assert_allclose(wq @ mean + got, w @ mean, rtol=1e-5, atol=1e-6)


# -- HMSE scores ------------------------------------------------------------------------------


def _mlp():
    r = _rng(5)
    g = Graph(
        ("x",),
        (Node("l1", "linear", ("x",)), Node("a", "tanh", ("l1",)), Node("l2", "linear", ("a",))),
        ("l2",),
    )
    p = {
        "l1": {"weight": jnp.asarray(r.normal(size=(4, 3)), jnp.float32)},
        "l2": {"weight": jnp.asarray(r.normal(size=(3, 4)), jnp.float32)},
    }
    return g, p


def test_hmse_scores_converge_to_exact_diagonal():
    g, p = _mlp()
    x = _rng(6).normal(size=(2, 1, 3)).astype(np.float32)  # 2 samples of batch 1
    exact = {
        k: np.mean([exact_weight_diag(g, p, [x[s]], k) for s in range(2)], axis=0)
        for k in ("l1", "l2")
    }
    est = weight_scores(g, p, [x], ["l1", "l2"], max_iter=4000, tol=0.0, chunk=4000, progress=False)
    for k in ("l1", "l2"):
        err = np.abs(np.asarray(est[k]) - exact[k]).sum() / exact[k].sum()
        assert err < 0.05, (k, err)
    # MCT's rule stops within 100 draws and is already a usable estimate.
    quick = weight_scores(g, p, [x], ["l1", "l2"], progress=False)
    err = np.abs(np.asarray(quick["l2"]) - exact["l2"]).sum() / exact["l2"].sum()
    assert err < 0.35


# -- end to end on a graph; bad input -------------------------------------------------------


def test_quantize_graph_end_to_end_and_info_roundtrip(tmp_path):
    g, p = small_cnn()
    xs, gen = data()
    res = quantize_graph(g, p, gen, core_config=QUIET)
    ops = [n.op for n in res.graph.nodes]
    assert "batch_norm" not in ops and ops.count("fake_quant") == 4  # x, relu, fc, sm
    y = jax.jit(apply, static_argnums=0)(res.graph, res.params, xs[0])
    np.testing.assert_allclose(y, apply(res.graph, res.params, xs[0]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.sum(y, axis=-1), 1.0, atol=0.05)
    info = res.info
    sm = info.layer("sm")
    assert sm.threshold == 1.0 and sm.signed is False and sm.error_method == "minmax"
    relu = info.layer("relu")
    assert relu.signed is False and np.log2(relu.threshold) % 1 == 0
    w = info.layer("conv", "weights")
    assert len(w.threshold) == 4 and w.channel_axis == 0 and w.sqnr_db > 25
    assert info.output_sqnr_db > 20
    # kernels are on their grids: w / (t / 127) integral
    t = np.asarray(w.threshold).reshape(4, 1, 1, 1)
    k = np.asarray(res.params["conv"]["weight"]) / (t / 2**7)
    np.testing.assert_allclose(k, np.round(k), atol=1e-3)
    path = tmp_path / "info.json"
    info.save(path)
    json.loads(path.read_text())
    assert jq.core.QuantizationInfo.load(path) == jq.core.QuantizationInfo.from_dict(info.to_dict())
    assert jq.core.QuantizationInfo.load(path).layer("relu").threshold == relu.threshold


def test_bad_inputs_raise_clear_errors():
    g, p = small_cnn()
    xs, gen = data(2)
    with pytest.raises(ValueError, match="no batch"):
        quantize_graph(g, p, lambda: iter(()), core_config=QUIET)
    with pytest.raises(TypeError, match="callable"):
        quantize_graph(g, p, [xs[0]], core_config=QUIET)
    bad = xs[0].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="batch 1, input 0 contains NaN"):
        quantize_graph(g, p, lambda: iter([[xs[0]], [bad]]), core_config=QUIET)
    with pytest.raises(ValueError, match="inf"):
        quantize_graph(g, p, lambda: iter([[np.full_like(xs[0], np.inf)]]), core_config=QUIET)
    with pytest.raises(ValueError, match="shape"):
        quantize_graph(g, p, lambda: iter([[xs[0]], [xs[0][:, :1]]]), core_config=QUIET)
    with pytest.raises(TypeError, match="dtype"):
        quantize_graph(g, p, lambda: iter([[xs[0].astype(complex)]]), core_config=QUIET)
    with pytest.raises(ValueError, match="2 input"):
        quantize_graph(g, p, lambda: iter([[xs[0], xs[0]]]), core_config=QUIET)
    with pytest.raises(TypeError, match="core_config"):
        quantize_graph(g, p, gen, core_config=jq.core.QuantizationConfig())
    with pytest.raises(ValueError, match="does not run"):
        quantize_graph(g, p, lambda: iter([[xs[0][:, :, :4]]]), core_config=QUIET)


def test_pooling_has_gradients_under_jit():
    pool = dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True)
    g = Graph(
        ("x",),
        (
            Node("mp", "max_pool", ("x",), dict(pool, dilation=(1, 1))),
            Node(
                "ap",
                "avg_pool",
                ("mp",),
                dict(pool, count_include_pad=False, divisor_override=None),
            ),
        ),
        ("ap",),
    )
    x = jnp.asarray(_rng(7).normal(size=(2, 3, 7, 7)), jnp.float32)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(apply(g, {}, x) ** 2)))(x)
    assert np.isfinite(np.asarray(grad)).all() and np.any(np.asarray(grad) != 0)


def test_rebase_graph_carries_shape_attributes():
    """The quantized graph for another batch size: reshape targets from the new float graph,
    quantizers kept; any other difference is an error."""
    from jq.ptq import rebase_graph

    def baked(batch):
        g, p = small_cnn()
        nodes = tuple(
            n.replace(attrs={"shape": (batch, 36)}) if n.op == "reshape" else n for n in g.nodes
        )
        return g.replace(nodes=nodes, input_shapes=[(batch, 2, 6, 6)]), p

    g8, p = baked(8)
    xs, gen = data()
    res = quantize_graph(g8, p, gen, core_config=QUIET)
    g3 = fold_batch_norm(baked(3)[0], p)[0]
    q3 = rebase_graph(res.graph, res.float_graph, g3)
    assert q3.input_shapes == ((3, 2, 6, 6),)
    assert [n.attr("shape") for n in q3.nodes if n.op == "reshape"] == [(3, 36)]
    assert [n.op for n in q3.nodes] == [n.op for n in res.graph.nodes]
    y8 = np.asarray(apply(res.graph, res.params, xs[0]))
    np.testing.assert_array_equal(np.asarray(apply(q3, res.params, xs[0][:3])), y8[:3])
    other = g3.replace(nodes=g3.nodes[:-1] + (g3.nodes[-1].replace(op="relu"),))
    with pytest.raises(ValueError, match="differs from the quantized one"):
        rebase_graph(res.graph, res.float_graph, other)


def test_timings_split_compile_from_run():
    """``info.timings`` gives each stage's wall seconds and, under ``<stage>.compile``, the
    part spent compiling; a second call on the same graph reuses every compiled program."""
    graph, params = small_cnn()
    _, gen = data(batch=7)  # a batch size no other test compiles for
    first = quantize_graph(graph, params, gen, core_config=QUIET).info.timings
    again = quantize_graph(graph, params, gen, core_config=QUIET).info.timings
    stages = ("prepare", "statistics", "weights", "activations", "build", "sqnr", "total")
    for t in (first, again):
        for s in stages:
            assert t[s] >= 0 and 0 <= t[s + ".compile"], (s, t)
        assert t["total.compile"] <= t["total"] + 1e-6
    assert first["total.compile"] > 0.1  # a fresh graph compiles its statistics step at least
    assert again["statistics.compile"] < first["statistics.compile"]
