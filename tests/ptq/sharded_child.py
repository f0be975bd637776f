"""Quantize one small conv net with its calibration batches split over 1, 2 and 4 devices.

Run by ``tests/ptq/test_sharded.py`` in a fresh process with 4 forced CPU devices (the device
count is fixed when JAX starts), as ``sharded_child.py [full]``; prints one JSON line: for each
case, each quantized param's bytes (hex) per device count, and the biases (bias correction) as
floats.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np
from jax.sharding import Mesh

import jq
import jq.core
import jq.ptq

CASES = {  # name: (activation error method, mct_compat)
    "mse": ("mse", False),
    "hmse": ("hmse", False),
    "compat_mse": ("mse", True),
}


def model() -> tuple[jq.Graph, dict]:
    conv = {"stride": (1, 1), "padding": ((1, 1), (1, 1)), "dilation": (1, 1), "groups": 1}
    g = jq.Graph(
        inputs=("x",),
        nodes=(
            jq.Node("conv", "conv", ("x",), conv),
            jq.Node("bn", "batch_norm", ("conv",), {"eps": 1e-5}),
            jq.Node("act", "relu", ("bn",)),
            jq.Node("pool", "adaptive_avg_pool", ("act",), {"output_size": (1, 1)}),
            jq.Node("flat", "reshape", ("pool",), {"shape": (-1, 6)}),
            jq.Node("fc", "linear", ("flat",)),
        ),
        outputs=("fc",),
    )
    rng = np.random.default_rng(0)
    f32 = np.float32
    params = {
        "conv": {"weight": rng.normal(size=(6, 3, 3, 3)).astype(f32), "bias": np.zeros(6, f32)},
        "bn": {
            "weight": rng.uniform(0.5, 1.5, 6).astype(f32),
            "bias": rng.normal(size=6).astype(f32),
            "running_mean": rng.normal(size=6).astype(f32) * 0.1,
            "running_var": rng.uniform(0.5, 2, 6).astype(f32),
        },
        "fc": {"weight": rng.normal(size=(4, 6)).astype(f32), "bias": np.zeros(4, f32)},
    }
    return g, params


def run(method: str, compat: bool, mesh, batches) -> dict:
    """Quantize :func:`model` on ``batches`` (a list of arrays, or a generator function)."""
    g, p = model()
    qc = jq.core.QuantizationConfig(activation_error_method=method, mct_compat=compat)
    cfg = jq.core.CoreConfig(quantization_config=qc, progress=False)
    gen = batches if callable(batches) else lambda: ([b] for b in batches)
    res = jq.ptq.quantize_graph(g, p, gen, core_config=cfg, mesh=mesh)
    out = {}
    for path, v in jax.tree_util.tree_leaves_with_path(res.params):
        key = jax.tree_util.keystr(path)
        v = np.asarray(v)
        out[key] = v.tolist() if key.endswith("['bias']") else v.tobytes().hex()
    return out


def searches_equal(mesh, compat: bool) -> dict[str, bool]:
    """The batched kernel and activation searches split over ``mesh`` equal one device's
    (``compat``: in MCT-compat mode)."""
    rng = np.random.default_rng(2)
    shapes = [(16, 3, 3, 3), (16, 16, 3, 3), (32, 16, 3, 3), (10, 20), (7, 3, 3, 3)]
    ts = [rng.normal(size=s).astype(np.float32) for s in shapes]
    hs = [np.histogram(rng.standard_normal(999) * (i + 1) + i % 2, bins=128) for i in range(7)]
    bins = np.stack([h[1] for h in hs])
    counts = np.stack([h[0] for h in hs]).astype(np.float32)

    def same(a, b) -> bool:
        pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
        return all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in pairs)

    out = {}
    for method, error in (("symmetric", "mse"), ("uniform", "mae")):
        kw = dict(method=method, error_method=error, mct_compat=compat)
        one = jq.weights_qparams_batch(ts, **kw)
        out[f"weights {method} {error} {compat}"] = same(
            one, jq.weights_qparams_batch(ts, mesh=mesh, **kw)
        )
    for method, error in (("power_of_two", "mse"), ("symmetric", "kl")):
        kw = dict(method=method, error_method=error, mct_compat=compat)
        one = jq.activation_qparams_batch(bins, counts, **kw)
        out[f"activations {method} {error} {compat}"] = same(
            one, jq.activation_qparams_batch(bins, counts, mesh=mesh, **kw)
        )
    return out


def main(full: bool) -> dict:
    """Default MSE on 1, 2 and 4 devices and the edge cases; with ``full`` (``make test-all``)
    HMSE and compat mode on 1 and 4 devices and the compat searches instead."""
    rng = np.random.default_rng(1)
    data = rng.normal(size=(24, 3, 8, 8)).astype(np.float32)
    by8 = [data[i : i + 8] for i in range(0, 24, 8)]
    by12 = [data[:12], data[12:]]
    meshes = {n: Mesh(np.asarray(jax.devices()[:n]), ("batch",)) for n in (2, 4)}
    res: dict = {"searches": searches_equal(meshes[4], compat=full)}
    for name, (method, compat) in CASES.items():
        if (name == "mse") == full:
            continue
        res[name] = {"1": run(method, compat, False, by8)}
        for n, mesh in meshes.items():
            if n == 4 or name == "mse":
                res[name][str(n)] = run(method, compat, mesh, by8)
    if full:
        return res
    res["mse"]["1 by12"] = run("mse", False, False, by12)
    try:
        run("mse", False, meshes[4], [data[:6]])
    except ValueError as e:
        res["indivisible"] = str(e)
    res["auto_indivisible"] = run("mse", False, None, [data[:6], data[6:12]])
    res["auto_1"] = run("mse", False, False, [data[:6], data[6:12]])
    return res


if __name__ == "__main__":
    # Before JAX starts its CPU backend (at the first device use, not at import).
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    print(json.dumps(main(full=sys.argv[1:] == ["full"])))
    sys.stdout.flush()
