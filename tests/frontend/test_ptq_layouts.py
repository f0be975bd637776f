"""The PTQ pipeline on graphs from jq.from_jax with Flax layouts (NHWC data, HWIO conv kernels,
(in, out) dense kernels): thresholds per output channel, batch-norm folding and bias
correction computed in the program's own layout agree with the pipeline's."""

from __future__ import annotations

import jax
import numpy as np
from jax import lax

import jq
import jq.core
import jq.ptq

CFG = jq.core.CoreConfig(progress=False)


def _net(p, x):
    """NHWC conv (HWIO kernel, bias) -> inference batch norm -> relu -> mean -> dense."""
    y = lax.conv_general_dilated(
        x, p["conv"]["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    y = y + p["conv"]["bias"].reshape(1, 1, 1, -1)
    bn = p["bn"]
    scale = lax.rsqrt(bn["var"] + 1e-5) * bn["scale"]
    y = (y - bn["mean"].reshape(1, 1, 1, -1)) * scale.reshape(1, 1, 1, -1)
    y = jax.nn.relu(y + bn["bias"].reshape(1, 1, 1, -1))
    y = y.mean(axis=(1, 2))
    return y @ p["fc"]["kernel"] + p["fc"]["bias"][None]


def _params(rng, cin=3, cout=6, classes=4):
    f32 = np.float32
    # Output channel o of each kernel spans a range 2**o: a per-channel search on the wrong
    # axis gives thresholds that are not increasing by octaves.
    conv = rng.normal(size=(3, 3, cin, cout)) * 2.0 ** np.arange(cout)
    fc = rng.normal(size=(cout, classes)) * 2.0 ** np.arange(classes)
    return {
        "conv": {"kernel": conv.astype(f32), "bias": rng.normal(size=cout).astype(f32)},
        "bn": {
            "mean": rng.normal(size=cout).astype(f32),
            "var": rng.uniform(0.5, 2, cout).astype(f32),
            "scale": rng.uniform(0.5, 2, cout).astype(f32),
            "bias": rng.normal(size=cout).astype(f32),
        },
        "fc": {"kernel": fc.astype(f32), "bias": np.zeros(classes, f32)},
    }


def _quantize(rng, p, error_method="noclipping"):
    xs = [rng.normal(0.5, 1, size=(8, 6, 6, 3)).astype(np.float32) for _ in range(2)]
    graph, params = jq.from_jax(_net, p, xs[0])
    qc = jq.core.QuantizationConfig(weights_error_method=error_method)
    cfg = jq.core.CoreConfig(quantization_config=qc, progress=False)
    res = jq.ptq.quantize_graph(graph, params, lambda: ([x] for x in xs), core_config=cfg)
    return graph, res, xs


def _folded_hwio(p):
    bn = p["bn"]
    s = 1.0 / np.sqrt(bn["var"] + 1e-5) * bn["scale"]
    w = p["conv"]["kernel"] * s  # HWIO: output channels on the last axis
    b = (p["conv"]["bias"] - bn["mean"]) * s + bn["bias"]
    return w, b


def test_graph_form_and_batch_norm_folding(rng):
    p = _params(rng)
    graph, res, xs = _quantize(rng, p)
    assert [n.op for n in graph.nodes] == [
        "permute",
        "conv",
        "batch_norm",
        "relu",
        "mean",
        "linear",
    ]
    w, b = _folded_hwio(p)
    fp = res.float_params["conv"]
    np.testing.assert_allclose(fp["weight"], np.transpose(w, (3, 2, 0, 1)), rtol=2e-6)
    np.testing.assert_allclose(fp["bias"], b, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(
        jq.apply(res.float_graph, res.float_params, xs[0]), _net(p, xs[0]), rtol=1e-5, atol=1e-5
    )


def test_thresholds_per_output_channel(rng):
    p = _params(rng)
    for method in ("noclipping", "mse"):
        _, res, _ = _quantize(rng, p, method)
        layers = {l.name: l for l in res.info.layers if l.kind == "weights"}
        w, _ = _folded_hwio(p)
        for name, kernel, axis in (("conv", w, 3), ("fc", p["fc"]["kernel"], 1)):
            ref = jq.weights_qparams(kernel, channel_axis=axis, error_method=method)
            np.testing.assert_allclose(
                layers[name].threshold, np.asarray(ref.threshold).ravel(), rtol=1e-5
            )
        if method == "noclipping":
            # max |W| per output channel, or max * 128/127 where the max is positive (the
            # signed grid's top is t * 127/128)
            np.testing.assert_allclose(
                layers["fc"].threshold, np.abs(p["fc"]["kernel"]).max(axis=0), rtol=1 / 126
            )


def test_bias_correction_in_flax_layout(rng):
    p = _params(rng)
    _, res, xs = _quantize(rng, p)
    w, b = _folded_hwio(p)
    wq = np.transpose(np.asarray(res.params["conv"]["weight"]), (2, 3, 1, 0))  # OIHW -> HWIO
    # The conv reads the quantized input; its mean per input channel over the data (NHWC).
    xq = [
        np.asarray(jq.apply(res.graph, res.params, x, capture=("x.act_quant",))[1]["x.act_quant"])
        for x in xs
    ]
    mean_in = np.mean(np.concatenate(xq), axis=(0, 1, 2))
    corr = np.einsum("hwio,i->o", (wq - w).astype(np.float64), mean_in)
    np.testing.assert_allclose(res.params["conv"]["bias"], b - corr, rtol=1e-4, atol=1e-5)
