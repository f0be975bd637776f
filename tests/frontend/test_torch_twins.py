"""The torch twins of the lax-level ops (``adapters/jq_torch/_lax_ops.py``): a graph converted
from a JAX program runs the same under ``jq_torch.to_torch`` as under ``jq.apply``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

torch = pytest.importorskip("torch")

import jq  # noqa: E402
import jq_torch  # noqa: E402


def _fn(p, x, idx):
    """x (2, 6, 5); idx (2,) int32: most lax-level ops of jq._src.graph.ops."""
    y = jnp.maximum(x, p["c"][None, None]) - jnp.minimum(x, 0.5) + lax.erfc(x) + x**3
    y = jnp.where(y > 0.1, y, jnp.abs(y) ** 1.5) + jnp.remainder(x, 0.7) + jnp.floor(x)
    z = jnp.exp(-jnp.square(x)) * jnp.sign(x)
    w = lax.reduce_window(y, -jnp.inf, lax.max, (1, 2, 1), (1, 1, 2), ((0, 0), (1, 0), (0, 1)))
    s = lax.reduce_window(z, 0.0, lax.add, (1, 3, 2), (1, 1, 1), "SAME")
    att = jnp.einsum("bie,bje->bij", y, z)
    mask = jnp.tril(jnp.ones((6, 6), bool))[None]
    att = jax.nn.softmax(jnp.where(mask, att, jnp.finfo(jnp.float32).min), axis=-1)
    out = jnp.einsum("bij,bje->bie", att, s) + lax.pad(
        w[:, :, :2], 0.0, ((0, 0, 0), (0, 0, 0), (1, 2, 0))
    )
    am = jnp.argmax(out, axis=-1).astype(jnp.float32)
    d = lax.dynamic_slice(out, (0, idx[0], 1), (2, 3, 3))
    return out.sum(axis=(1, 2)) + out.max(axis=(1, 2)) + am.min(axis=1), d[:, 1::2]


def test_to_torch_runs_converted_jax_graphs(rng):
    p = {"c": rng.normal(size=(5,)).astype(np.float32)}
    x = rng.normal(size=(2, 6, 5)).astype(np.float32)
    idx = np.array([2, 1], np.int32)
    graph, params = jq.from_jax(_fn, p, x, idx)
    ops = {n.op for n in graph.nodes}
    assert {"maximum", "erfc", "select_n", "reduce_window", "dot_general", "masked_softmax"} <= ops
    assert {"pad_nd", "argmax", "dynamic_slice", "slice_nd", "reduce_max", "rem"} <= ops
    ref = [np.asarray(a) for a in jq.apply(graph, params, x, idx)]
    for r, f in zip(ref, _fn(p, x, idx), strict=True):
        np.testing.assert_allclose(r, f, rtol=1e-5, atol=1e-5)
    module = jq_torch.to_torch(graph, params)
    with torch.no_grad():
        got = module(torch.from_numpy(x), torch.from_numpy(idx))
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g.numpy(), r, rtol=1e-5, atol=1e-5)
