"""jq.from_jax on plain JAX functions: outputs equal the function's, kernels land in jq's
layout (output channels on axis 0), calls are inlined, bad input and unmapped primitives give
clear errors. Torch- and flax-free."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jq

RTOL = 1e-5  # max |graph - fn| <= RTOL * max(1, max |fn|), float32


def _close(graph, params, fn, p, *xs):
    ref = np.asarray(fn(p, *xs))
    got = np.asarray(jq.apply(graph, params, *xs))
    assert got.shape == ref.shape
    tol = RTOL * max(1.0, float(np.max(np.abs(ref))))
    assert float(np.max(np.abs(got - ref))) <= tol


def _conv_params(rng, k=3, cin=3, cout=5, groups=1):
    return {
        "conv": {
            "kernel": rng.normal(size=(k, k, cin // groups, cout)).astype(np.float32),
            "bias": rng.normal(size=(cout,)).astype(np.float32),
        }
    }


def _nhwc_conv(p, x, *, stride=1, dilation=1, padding="SAME", groups=1):
    y = lax.conv_general_dilated(
        x,
        p["conv"]["kernel"],
        (stride, stride),
        padding,
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )
    return y + p["conv"]["bias"].reshape(1, 1, 1, -1)


@pytest.mark.parametrize(
    "stride, dilation, padding, groups",
    [(1, 1, "SAME", 1), (2, 1, "VALID", 1), (1, 2, ((2, 1), (0, 3)), 1), (1, 1, "SAME", 3)],
)
def test_nhwc_conv_matches_and_kernel_is_oihw(rng, stride, dilation, padding, groups):
    p = _conv_params(rng, cin=3, cout=6, groups=groups)
    x = rng.normal(size=(2, 9, 9, 3)).astype(np.float32)

    def fn(p, x):
        return jax.nn.relu(
            _nhwc_conv(p, x, stride=stride, dilation=dilation, padding=padding, groups=groups)
        )

    graph, params = jq.from_jax(fn, p, x)
    _close(graph, params, fn, p, x)
    assert [n.op for n in graph.nodes] == ["permute", "conv", "relu", "permute"]
    w = params["conv"]["weight"]
    np.testing.assert_array_equal(w, np.transpose(p["conv"]["kernel"], (3, 2, 0, 1)))
    np.testing.assert_array_equal(params["conv"]["bias"], p["conv"]["bias"])  # add folded
    assert graph.node("conv").attr("groups") == groups


def test_mlp_names_layout_and_jit(rng):
    p = {
        "Dense_0": {"kernel": rng.normal(size=(4, 8)).astype(np.float32), "bias": np.ones(8)},
        "Dense_1": {"kernel": rng.normal(size=(8, 3)).astype(np.float32)},
    }
    p["Dense_0"]["bias"] = p["Dense_0"]["bias"].astype(np.float32)

    def fn(p, x):
        h = jax.nn.silu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"][None])
        return jax.nn.softmax(h @ p["Dense_1"]["kernel"], axis=-1)

    x = rng.normal(size=(5, 4)).astype(np.float32)
    graph, params = jq.from_jax(fn, p, x)
    assert [(n.name, n.op) for n in graph.nodes] == [
        ("Dense_0", "linear"),
        ("silu", "silu"),
        ("Dense_1", "linear"),
        ("softmax", "softmax"),
    ]
    assert params["Dense_0"]["weight"].shape == (8, 4)  # (out, in)
    _close(graph, params, fn, p, x)
    jitted = jax.jit(jq.apply, static_argnums=0)(graph, params, x)
    np.testing.assert_allclose(jitted, fn(p, x), rtol=1e-5, atol=1e-6)


def test_general_contractions(rng):
    """DenseGeneral-style (in, heads, dim) kernels, kernel-first products, attention einsums."""
    p = {
        "qkv": {"kernel": rng.normal(size=(6, 2, 3)).astype(np.float32)},
        "proj": {"kernel": rng.normal(size=(4, 6)).astype(np.float32)},
    }

    def fn(p, x):  # x (B, L, 6)
        q = jnp.einsum("bld,dhk->blhk", x, p["qkv"]["kernel"])
        s = jnp.einsum("blhk,bmhk->bhlm", q, q) / 3.0
        a = jnp.einsum("bhlm,bmhk->blhk", jax.nn.softmax(s, axis=-1), q).reshape(2, 5, 6)
        return jnp.einsum("od,bld->bol", p["proj"]["kernel"], a)  # kernel first

    x = rng.normal(size=(2, 5, 6)).astype(np.float32)
    graph, params = jq.from_jax(fn, p, x)
    _close(graph, params, fn, p, x)
    assert params["qkv"]["weight"].shape == (6, 6) and params["proj"]["weight"].shape == (4, 6)
    assert "softmax" in [n.op for n in graph.nodes]


def test_calls_inlined_and_constants_folded(rng):
    @jax.custom_vjp
    def clip_grad(x):
        return x

    clip_grad.defvjp(lambda x: (x, None), lambda _, g: (jnp.clip(g, -1, 1),))

    @jax.checkpoint
    def block(w, x):
        return jnp.tanh(x @ w)

    @jax.jit
    def fn(p, x):
        w = p["w"] * jnp.sqrt(2.0)  # computed from params alone: evaluated at conversion
        y = clip_grad(block(w, x))
        return jnp.max(y, axis=-1) + jnp.argmax(y, axis=-1).astype(jnp.float32)

    p = {"w": rng.normal(size=(4, 4)).astype(np.float32)}
    x = rng.normal(size=(3, 4)).astype(np.float32)
    graph, params = jq.from_jax(fn, p, x)
    _close(graph, params, fn, p, x)
    # A root-level param names its layer after the op.
    np.testing.assert_allclose(params["linear"]["weight"], (p["w"] * np.sqrt(2.0)).T, rtol=1e-6)


def test_pooling_reductions_and_shapes(rng):
    def fn(p, x):  # x NHWC
        y = _nhwc_conv(p, x)
        y = lax.reduce_window(y, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        y = jnp.concatenate([y, jnp.maximum(y, 0.5)], axis=-1)[:, :, 1:, :]
        y = jnp.where(y > 0, y, 0.1 * y) ** 2
        return jnp.transpose(y, (0, 3, 1, 2)).reshape(2, -1)

    p = _conv_params(rng, cout=4)
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    graph, params = jq.from_jax(fn, p, x)
    _close(graph, params, fn, p, x)


@pytest.mark.parametrize("divisor, op", [(4.0, "avg_pool"), (5.0, "reduce_window")])
def test_window_sum_over_its_size_is_an_avg_pool(rng, divisor, op):
    """A 2x2 window sum of NHWC data divided by 4 is torch's avg_pool (stored channels-first,
    even at the input); divided by anything else it stays a sum and a division."""

    def fn(p, x):
        y = lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / divisor
        return _nhwc_conv(p, y)

    p = _conv_params(rng, cout=4)
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    graph, params = jq.from_jax(fn, p, x)
    _close(graph, params, fn, p, x)
    assert [n.op for n in graph.nodes][:2] == ["permute", op]


def test_vmapped_single_example_conv_is_one_layer(rng):
    """A conv written for one (C, H, W) example and vmapped over the batch (Equinox's way):
    the reshapes vmap adds around it cancel, so its bias folds and relu follows it."""
    k = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)  # OIHW
    p = {"conv": {"weight": k, "bias": rng.normal(size=4).astype(np.float32)}}

    def one(p, x):  # x (C, H, W)
        y = lax.conv_general_dilated(x[None], p["conv"]["weight"], (1, 1), "SAME")[0]
        return jax.nn.relu(y + p["conv"]["bias"][:, None, None])

    def fn(p, x):
        return jax.vmap(lambda xi: one(p, xi))(x)

    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    graph, params = jq.from_jax(fn, p, x)
    _close(graph, params, fn, p, x)
    assert [n.op for n in graph.nodes] == ["conv", "relu"]
    np.testing.assert_array_equal(params["conv"]["bias"], p["conv"]["bias"])


def test_flatten_into_dense_reads_channels_first(rng):
    """An NHWC flatten into a dense layer: no permute before it; the dense layer's columns
    follow the channels-first storage instead (the graph torch's flatten gives)."""
    p = _conv_params(rng, cout=4)
    p["fc"] = {"kernel": rng.normal(size=(6 * 5 * 4, 3)).astype(np.float32)}

    def fn(p, x):
        y = jax.nn.silu(_nhwc_conv(p, x))
        return y.reshape(y.shape[0], -1) @ p["fc"]["kernel"]

    x = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)
    graph, params = jq.from_jax(fn, p, x)
    _close(graph, params, fn, p, x)
    assert [n.op for n in graph.nodes] == ["permute", "conv", "silu", "reshape", "linear"]
    want = p["fc"]["kernel"].reshape(6, 5, 4, 3).transpose(3, 2, 0, 1).reshape(3, -1)
    np.testing.assert_array_equal(params["fc"]["weight"], want)


def test_batch_norm_scale_folds_as_torch_does(rng):
    """``rsqrt(var + eps) * scale`` evaluated at conversion equals jq's fold of a torch batch
    norm (``1 / sqrt(var + eps) * weight``, float32) bit for bit."""
    c = 64
    bn = {k: rng.uniform(0.5, 2, c).astype(np.float32) for k in ("var", "scale", "mean")}
    fc = {"kernel": rng.normal(size=(3, c)).astype(np.float32)}

    def fn(p, x):
        s = lax.rsqrt(p["bn"]["var"] + 1e-5) * p["bn"]["scale"]
        return (x @ p["fc"]["kernel"] - p["bn"]["mean"][None]) * s[None]

    graph, params = jq.from_jax(fn, {"bn": bn, "fc": fc}, np.zeros((2, 3), np.float32))
    assert [n.op for n in graph.nodes] == ["linear", "batch_norm"]
    torch_fold = np.float32(1) / np.sqrt(bn["var"] + np.float32(1e-5)) * bn["scale"]
    np.testing.assert_array_equal(params["bn"]["weight"], torch_fold)


def test_sharding_placement_and_debug_prints_drop_out(rng):
    """with_sharding_constraint, device_put and jax.debug.print leave the values as they are."""
    mesh = jax.make_mesh((1,), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))

    def fn(p, x):
        y = lax.with_sharding_constraint(x @ p["w"], shard)
        jax.debug.print("y {}", y.sum())
        return jax.nn.relu(jax.device_put(y))

    p = {"w": rng.normal(size=(3, 4)).astype(np.float32)}
    x = rng.normal(size=(2, 3)).astype(np.float32)
    graph, params = jq.from_jax(fn, p, x)
    assert [n.op for n in graph.nodes] == ["linear", "relu"]
    _close(graph, params, fn, p, x)


def test_unsupported_primitives_listed_at_once(rng):
    def fn(p, x):
        y = jnp.cumsum(x @ p["w"], axis=-1)
        return jnp.sort(y, axis=-1)

    p = {"w": np.eye(3, dtype=np.float32)}
    with pytest.raises(jq.UnsupportedPrimitiveError) as e:
        jq.from_jax(fn, p, np.zeros((2, 3), np.float32))
    prims = [u.primitive for u in e.value.primitives]
    assert "cumsum" in prims and "sort" in prims
    assert all("test_from_jax.py" in u.where for u in e.value.primitives)
    assert "2 unsupported" in str(e.value) and "cumulative sums" in str(e.value)


def test_bad_input_errors(rng):
    w = rng.normal(size=(3, 3)).astype(np.float32)
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match=r"non-array leaves \['act \(str\)'\]"):
        jq.from_jax(lambda p, x: x @ p["w"], {"w": w, "act": "relu"}, x)
    with pytest.raises(jq.UnsupportedPrimitiveError, match="closes over"):
        jq.from_jax(
            lambda p, x: x @ jnp.asarray(w) + p["b"][None], {"b": np.zeros(3, np.float32)}, x
        )
    with pytest.raises(ValueError, match="branches"):
        jq.from_jax(lambda p, x: x if float(x.sum()) > 0 else -x, {}, x)
    with pytest.raises(TypeError, match="example input 0"):
        jq.from_jax(lambda p, x: x, {}, [1.0, 2.0])
