"""Linear and residual collapsing (``jq/_src/ptq/collapse.py``): exact float rewrites, MCT
2.6.1's conditions (the patterns it refuses are left alone), its order and names, the flags,
a graph from ``jq.from_jax`` and the pipeline. The parity with MCT itself is in
``tests/torch/test_ptq_torch.py`` (``test_compat_collapsing_equals_mct``)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax import lax

import jq
import jq.core
import jq.ptq
from jq import Graph, Node, apply
from jq._src.ptq.collapse import collapse_linear, collapse_residual, merge_linear
from jq._src.ptq.prepare import float_rewrites

F32 = np.float32
# Collapsing reorders float32 sums (W2 @ (W1 x) -> (W2 W1) x): outputs agree to rounding.
RTOL, ATOL = 1e-5, 1e-5


def conv(name, src, *, k=3, stride=1, pad=None, dil=1, groups=1):
    """A 2-D ``conv`` node; ``pad`` defaults to the padding that keeps the size."""
    kh, kw = (k, k) if isinstance(k, int) else k
    pad = ((dil * (kh - 1) // 2,) * 2, (dil * (kw - 1) // 2,) * 2) if pad is None else pad
    attrs = dict(stride=(stride, stride), padding=pad, dilation=(dil, dil), groups=groups)
    return Node(name, "conv", (src,), attrs)


def conv_params(rng, cout, cin, k=3, *, groups=1, bias=True):
    kh, kw = (k, k) if isinstance(k, int) else k
    p = {"weight": rng.normal(0, 0.5, (cout, cin // groups, kh, kw)).astype(F32)}
    if bias:
        p["bias"] = rng.normal(0, 0.2, cout).astype(F32)
    return p


def x_of(rng, c=4, hw=7):
    return rng.normal(0, 1, (2, c, hw, hw)).astype(F32)


def assert_same_function(g1, p1, g2, p2, x):
    np.testing.assert_allclose(apply(g2, p2, x), apply(g1, p1, x), rtol=RTOL, atol=ATOL)


def two_convs(first, second, p1, p2):
    g = Graph(("x",), (first, second, Node("out", "relu", (second.name,))), ("out",))
    return g, {first.name: p1, second.name: p2}


# -- linear collapsing ------------------------------------------------------------------------


@pytest.mark.parametrize("bias1", [True, False])
@pytest.mark.parametrize("bias2", [True, False])
@pytest.mark.parametrize("compat", [True, False])
def test_conv_then_1x1_conv_collapses_exactly(rng, bias1, bias2, compat):
    g, p = two_convs(
        conv("a", "x"),
        conv("b", "a", k=1),
        conv_params(rng, 6, 4, bias=bias1),
        conv_params(rng, 5, 6, 1, bias=bias2),
    )
    g2, p2, done = collapse_linear(g, p, mct_compat=compat)
    assert [n.name for n in g2.nodes] == ["a_b_collapsed", "out"]
    assert g2.node("out").inputs == ("a_b_collapsed",) and done[0].sources == ("a", "b")
    merged = g2.node("a_b_collapsed")
    assert merged.attrs == g.node("a").attrs and dict(merged.param_shapes)["weight"] == (5, 4, 3, 3)
    assert ("bias" in p2["a_b_collapsed"]) == (bias1 or bias2) and "a" not in p2
    assert_same_function(g, p, g2, p2, x_of(rng))
    assert set(p) == {"a", "b"}  # input unchanged


def test_merged_kernel_is_the_product_in_float64():
    rng = np.random.default_rng(3)
    p1, p2 = conv_params(rng, 8, 3), conv_params(rng, 4, 8, 1)
    got = merge_linear(p1, p2)
    want = np.einsum("om,mihw->oihw", p2["weight"][:, :, 0, 0].astype(float), p1["weight"])
    np.testing.assert_array_equal(got["weight"], want.astype(F32))
    b = p2["weight"][:, :, 0, 0].astype(float) @ p1["bias"] + p2["bias"]
    np.testing.assert_array_equal(got["bias"], b.astype(F32))
    compat = merge_linear(p1, p2, mct_compat=True)  # float32 sums, MCT's rounding
    np.testing.assert_allclose(compat["weight"], got["weight"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "first, second, channels, k2",
    [
        (conv("a", "x", stride=2), conv("b", "a", k=1), (4, 6, 6), 1),  # strided first conv
        (conv("a", "x"), conv("b", "a", k=1, stride=2), (4, 6, 6), 1),  # strided 1x1
        (conv("a", "x", groups=2), conv("b", "a", k=1), (4, 6, 6), 1),  # grouped first conv
        (conv("a", "x"), conv("b", "a", k=1, groups=2), (4, 6, 6), 1),  # grouped 1x1
        (conv("a", "x", dil=2), conv("b", "a", k=1), (4, 6, 6), 1),  # dilated first conv
        (conv("a", "x"), conv("b", "a", k=1, pad=((1, 1), (1, 1))), (4, 6, 6), 1),  # padded 1x1
        (conv("a", "x"), conv("b", "a"), (4, 6, 6), 3),  # second kernel 3x3
        (conv("a", "x"), conv("b", "a", k=1), (3, 8, 16), 1),  # more kernel scalars after
    ],
)
def test_patterns_mct_refuses_are_left_alone(rng, first, second, channels, k2):
    cin, cmid, cout = channels
    g, p = two_convs(
        first,
        second,
        conv_params(rng, cmid, cin, groups=first.attr("groups")),
        conv_params(rng, cout, cmid, k2, groups=second.attr("groups")),
    )
    out = collapse_linear(g, p)
    assert out[0] is g and out[2] == ()


def test_a_conv_read_twice_or_returned_is_not_collapsed_away(rng):
    p = {"a": conv_params(rng, 6, 4), "b": conv_params(rng, 6, 6, 1)}
    read_twice = Graph(
        ("x",), (conv("a", "x"), conv("b", "a", k=1), Node("s", "add", ("a", "b"))), ("s",)
    )
    returned = Graph(("x",), (conv("a", "x"), conv("b", "a", k=1)), ("a", "b"))
    for g in (read_twice, returned):
        assert collapse_linear(g, p)[2] == ()


def test_non_square_first_kernel_collapses_exactly(rng):
    """MCT 2.6.1 raises here (its identity probe pads the wrong axes); jq collapses."""
    g, p = two_convs(
        conv("a", "x", k=(3, 5)),
        conv("b", "a", k=1),
        conv_params(rng, 6, 4, (3, 5)),
        conv_params(rng, 6, 6, 1),
    )
    g2, p2, done = collapse_linear(g, p)
    assert len(done) == 1
    assert_same_function(g, p, g2, p2, x_of(rng))


def _chain(rng, channels, kernels):
    """x -> c0 -> c1 -> ... (channels[i] -> channels[i + 1], kernel kernels[i])."""
    names = "abcdefgh"[: len(kernels)]
    nodes, p, src = [], {}, "x"
    for i, (n, k) in enumerate(zip(names, kernels, strict=True)):
        nodes.append(conv(n, src, k=k))
        p[n] = conv_params(rng, channels[i + 1], channels[i], k)
        src = n
    return Graph(("x",), tuple(nodes), (src,)), p


@pytest.mark.parametrize(
    "channels, kernels, name",
    [
        # MCT retries the edges in node order with each merged node appended last: c and d
        # merge before a_b meets them (names checked against MCT 2.6.1's).
        ((4, 4, 4, 4, 4), (1, 1, 1, 1), "a_b_collapsed_c_d_collapsed_collapsed"),
        ((4, 4, 4, 4, 4), (3, 1, 1, 1), "a_b_collapsed_c_d_collapsed_collapsed"),
        # a -> b would add kernel scalars; b -> c merges, then a meets b_c and merges.
        ((3, 8, 16, 8), (3, 1, 1), "a_b_c_collapsed_collapsed"),
    ],
)
def test_chains_merge_in_mcts_order_with_its_names(rng, channels, kernels, name):
    g, p = _chain(rng, channels, kernels)
    g2, p2, done = collapse_linear(g, p)
    assert [n.name for n in g2.nodes] == [name] and done[-1].name == name
    assert_same_function(g, p, g2, p2, x_of(rng, channels[0]))


# -- residual collapsing ----------------------------------------------------------------------


def _residual(conv_node, conv_first=True):
    inputs = (conv_node.name, "x") if conv_first else ("x", conv_node.name)
    return Graph(("x",), (conv_node, Node("add", "add", inputs)), ("add",))


@pytest.mark.parametrize("conv_first", [True, False])
@pytest.mark.parametrize(
    "k, dil, groups, pad",
    [
        (3, 1, 1, None),
        (1, 1, 1, None),
        (5, 1, 1, None),
        (3, 2, 1, None),
        ((3, 1), 1, 1, None),
        (2, 1, 1, ((0, 1), (0, 1))),  # torch's "same" for an even kernel
        (3, 1, 4, None),  # depthwise and grouped: MCT 2.6.1 raises IndexError, jq collapses
        (3, 1, 2, None),
    ],
)
def test_residual_collapses_exactly(rng, conv_first, k, dil, groups, pad):
    g = _residual(conv("c", "x", k=k, dil=dil, groups=groups, pad=pad), conv_first)
    p = {"c": conv_params(rng, 4, 4, k, groups=groups)}
    g2, p2, done = collapse_residual(g, p)
    assert [n.name for n in g2.nodes] == ["c_add_collapsed"] and g2.outputs == ("c_add_collapsed",)
    assert done[0].sources == ("c", "add") and done[0].kind == "residual"
    np.testing.assert_array_equal(p2["c_add_collapsed"]["bias"], p["c"]["bias"])
    assert_same_function(g, p, g2, p2, x_of(rng))


def test_residual_kernel_is_mcts_plus_one():
    """Float32 ``kernel[i, i, kh // 2, kw // 2] += 1``: bit for bit what MCT computes."""
    rng = np.random.default_rng(1)
    p = {"c": conv_params(rng, 4, 4)}
    _, p2, _ = collapse_residual(_residual(conv("c", "x")), p)
    want = p["c"]["weight"].copy()
    want[np.arange(4), np.arange(4), 1, 1] += F32(1)
    np.testing.assert_array_equal(p2["c_add_collapsed"]["weight"], want)


def test_residuals_that_are_not_identities_are_left_alone(rng):
    cases = [
        # channels differ (a broadcast add): MCT rewrites it into another function
        (conv("c", "x"), conv_params(rng, 1, 4)),
        # even kernel, dilation 2: no tap reads x at the output's position
        (conv("c", "x", k=2, dil=2, pad=((1, 1), (1, 1))), conv_params(rng, 4, 4, 2)),
    ]
    for node, params in cases:
        g = _residual(node)
        assert collapse_residual(g, {"c": params})[0] is g
    p = {"c": conv_params(rng, 4, 4)}
    read_twice = Graph(
        ("x",),
        (conv("c", "x"), Node("add", "add", ("c", "x")), Node("m", "mul", ("add", "c"))),
        ("m",),
    )
    other_input = Graph(("x", "y"), (conv("c", "x"), Node("add", "add", ("c", "y"))), ("add",))
    scalar = Graph(("x",), (conv("c", "x"), Node("add", "add", ("c",), {"scalar": 1.0})), ("add",))
    for g in (read_twice, other_input, scalar):
        assert collapse_residual(g, p)[2] == ()


def test_linear_then_residual_as_mct_orders_them(rng):
    g = Graph(
        ("x",),
        (conv("a", "x"), conv("b", "a", k=1), Node("add", "add", ("x", "b"))),
        ("add",),
    )
    p = {"a": conv_params(rng, 4, 4), "b": conv_params(rng, 4, 4, 1)}
    qc = jq.core.QuantizationConfig()
    rw = float_rewrites(g, p, qc)
    assert [n.name for n in rw.graph.nodes] == ["a_b_collapsed_add_collapsed"]
    assert [c.kind for c in rw.collapsed] == ["linear", "residual"]
    assert_same_function(g, p, rw.graph, rw.params, x_of(rng))
    off = jq.core.QuantizationConfig(linear_collapsing=False, residual_collapsing=False)
    rw_off = float_rewrites(g, p, off)
    assert rw_off.graph is g and rw_off.collapsed == ()
    only_res = float_rewrites(g, p, jq.core.QuantizationConfig(linear_collapsing=False))
    assert only_res.graph is g  # the add reads b, whose input is a, not x


# -- front ends and the pipeline --------------------------------------------------------------


def _flax_like(p, x):
    """NHWC: conv 3x3 (HWIO) -> conv 1x1 -> + x -> relu -> mean."""

    def c(y, q, pad):
        y = lax.conv_general_dilated(
            y, q["kernel"], (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + q["bias"].reshape(1, 1, 1, -1)

    y = c(c(x, p["c1"], "SAME"), p["c2"], "VALID")
    return jax.nn.relu(y + x).mean(axis=(1, 2))


def test_graphs_from_jax_collapse_in_jqs_layout(rng):
    """from_jax stores kernels OIHW and keeps NHWC data channels-first between convs, so the
    conv -> conv -> add pattern is the torch one; the collapsed graph computes the program."""
    p = {
        "c1": {
            "kernel": rng.normal(0, 0.3, (3, 3, 4, 4)).astype(F32),
            "bias": rng.normal(0, 0.1, 4).astype(F32),
        },
        "c2": {
            "kernel": rng.normal(0, 0.3, (1, 1, 4, 4)).astype(F32),
            "bias": rng.normal(0, 0.1, 4).astype(F32),
        },
    }
    x = rng.normal(0, 1, (2, 6, 6, 4)).astype(F32)
    graph, params = jq.from_jax(_flax_like, p, x)
    rw = float_rewrites(graph, params, jq.core.QuantizationConfig())
    assert [c.kind for c in rw.collapsed] == ["linear", "residual"]
    assert not any(n.name in ("c1", "c2") for n in rw.graph.nodes)
    np.testing.assert_allclose(
        apply(rw.graph, rw.params, x), _flax_like(p, x), rtol=RTOL, atol=ATOL
    )


def test_pipeline_quantizes_the_merged_kernel_once(rng):
    g = Graph(
        ("x",),
        (
            conv("a", "x"),
            conv("b", "a", k=1),
            Node("r", "relu", ("b",)),
            conv("c", "r"),
            Node("add", "add", ("c", "r")),
        ),
        ("add",),
    )
    p = {"a": conv_params(rng, 4, 4), "b": conv_params(rng, 4, 4, 1), "c": conv_params(rng, 4, 4)}
    xs = [x_of(rng) for _ in range(2)]
    cfg = jq.core.CoreConfig(progress=False)
    res = jq.ptq.quantize_graph(g, p, lambda: ([x] for x in xs), core_config=cfg)
    kinds = [(l.name, l.kind) for l in res.info.layers]
    assert kinds == [
        ("a_b_collapsed", "weights"),
        ("c_add_collapsed", "weights"),
        ("x", "activation"),
        ("r", "activation"),  # a_b_collapsed fuses with the relu; nothing between a and b
        ("c_add_collapsed", "activation"),
    ]
    assert any(
        "linear and residual collapsing: 2: a + b -> a_b_collapsed, c + add -> c_add_collapsed" == n
        for n in res.info.notes
    )
    off = jq.core.QuantizationConfig(linear_collapsing=False, residual_collapsing=False)
    res_off = jq.ptq.quantize_graph(
        g,
        p,
        lambda: ([x] for x in xs),
        core_config=jq.core.CoreConfig(quantization_config=off, progress=False),
    )
    assert [l.name for l in res_off.info.layers if l.kind == "weights"] == ["a", "b", "c"]
    assert "collapsing: off" in res_off.info.notes
    assert res_off.float_graph == g
