"""Weights-only PTQ (W4A16, W8A16) and per-group kernels: end to end against a reference
fake quant computed here, independently of jq's quantizers."""

from __future__ import annotations

import numpy as np
import pytest

import jq
import jq.core
import jq.ptq

QUIET = jq.core.CoreConfig(progress=False)
NO_BC = jq.core.CoreConfig(
    progress=False,
    quantization_config=jq.core.QuantizationConfig(weights_bias_correction=False),
)
W4A16 = jq.core.TargetPlatform(weights_n_bits=4, weights_group_size=16, quantize_activations=False)


def _mlp(rng):
    """``x (B, 64) -> fc1 (32) -> relu -> fc2 (8)`` as a jq graph with seeded weights."""
    g = jq.Graph(
        inputs=("x",),
        nodes=(
            jq.Node("fc1", "linear", ("x",)),
            jq.Node("act", "relu", ("fc1",)),
            jq.Node("fc2", "linear", ("act",)),
        ),
        outputs=("fc2",),
        input_shapes=((-1, 64),),
    )
    p = {
        "fc1": {"weight": rng.standard_normal((32, 64)).astype(np.float32), "bias": np.zeros(32)},
        "fc2": {"weight": rng.standard_normal((8, 32)).astype(np.float32), "bias": np.ones(8)},
    }
    p = {k: {n: np.asarray(v, np.float32) for n, v in d.items()} for k, d in p.items()}
    return g, p


def _ref_symmetric(w: np.ndarray, t: np.ndarray, n_bits: int, g: int) -> np.ndarray:
    """Per-group symmetric fake quant in plain NumPy: group ``j`` of row ``i`` is
    ``w[i, j*g:(j+1)*g]`` with threshold ``t[i, j]``; ``round(x / step)`` half to even,
    clipped to ``[-2^(n-1), 2^(n-1) - 1]``."""
    c, n = w.shape
    out = np.empty_like(w)
    half = 2 ** (n_bits - 1)
    for i in range(c):
        for j in range(n // g):
            step = np.float32(t[i, j]) / np.float32(half)
            x = w[i, j * g : (j + 1) * g]
            out[i, j * g : (j + 1) * g] = np.clip(np.round(x * (1 / step)), -half, half - 1) * step
    return out


def test_w4a16_without_data_equals_a_reference_fake_quant(rng):
    g, p = _mlp(rng)
    res = jq.ptq.quantize_graph(g, p, None, core_config=QUIET, target_platform=W4A16)
    assert not any(n.op == "fake_quant" for n in res.graph.nodes)  # activations stay float
    layers = {q.name: q for q in res.info.layers}
    assert set(layers) == {"fc1", "fc2"} and all(q.kind == "weights" for q in layers.values())
    x = rng.standard_normal((5, 64)).astype(np.float32)
    ref_params = {}
    for k in ("fc1", "fc2"):
        w = p[k]["weight"]
        q = layers[k]
        assert q.group_size == 16 and len(q.threshold) == w.size // 16
        t = np.asarray(q.threshold, np.float32).reshape(w.shape[0], -1)
        ref = _ref_symmetric(w, t, 4, 16)
        np.testing.assert_array_equal(np.asarray(res.params[k]["weight"]), ref)
        np.testing.assert_array_equal(np.asarray(res.params[k]["bias"]), p[k]["bias"])
        # the thresholds are the functional API's per-group search of the same kernel
        qp = jq.weights_qparams(w, n_bits=4, group_size=16)
        np.testing.assert_array_equal(np.asarray(qp.threshold), t)
        ref_params[k] = {"weight": ref, "bias": p[k]["bias"]}
    np.testing.assert_allclose(
        np.asarray(jq.apply(res.graph, res.params, x)),
        np.asarray(jq.apply(g, ref_params, x)),
        rtol=0,
        atol=0,
    )
    assert any("no bias correction" in n for n in res.info.notes)
    assert res.info.config["weights_group_size"] == 16
    assert res.info.output_sqnr_db is None  # no data, no SQNR


def test_with_data_the_same_kernels_and_bias_correction(rng):
    """W8A16 per channel: with data (bias correction off) the kernels equal the data-free
    call's; with bias correction the biases move by the quantization error times the input
    means (MCT's correction), kernels unchanged."""
    g, p = _mlp(rng)
    tp = jq.core.TargetPlatform(weights_n_bits=8, quantize_activations=False)
    xs = [rng.standard_normal((16, 64)).astype(np.float32) + 0.5 for _ in range(2)]
    data = lambda: ([x] for x in xs)  # noqa: E731
    free = jq.ptq.quantize_graph(g, p, None, core_config=QUIET, target_platform=tp)
    with_data = jq.ptq.quantize_graph(g, p, data, core_config=NO_BC, target_platform=tp)
    corrected = jq.ptq.quantize_graph(g, p, data, core_config=QUIET, target_platform=tp)
    for k in ("fc1", "fc2"):
        a = np.asarray(free.params[k]["weight"])
        np.testing.assert_array_equal(a, np.asarray(with_data.params[k]["weight"]))
        np.testing.assert_array_equal(a, np.asarray(corrected.params[k]["weight"]))
    mean = np.mean(np.concatenate(xs), axis=0)
    eps = np.asarray(corrected.params["fc1"]["weight"]) - p["fc1"]["weight"]
    np.testing.assert_allclose(
        np.asarray(corrected.params["fc1"]["bias"]), p["fc1"]["bias"] - eps @ mean, atol=1e-5
    )
    assert not any(n.op == "fake_quant" for n in with_data.graph.nodes)
    assert with_data.info.output_sqnr_db is not None and with_data.info.output_sqnr_db > 30


@pytest.mark.parametrize(
    ("tp", "core", "match"),
    [
        (jq.core.TargetPlatform(), QUIET, "activation quantizers need calibration data"),
        (
            W4A16,
            jq.core.CoreConfig(
                progress=False,
                quantization_config=jq.core.QuantizationConfig(weights_error_method="hmse"),
            ),
            "'hmse' needs calibration data",
        ),
        (
            W4A16,
            jq.core.CoreConfig(progress=False, overrides={"fc2": {"weights_error_method": "auto"}}),
            "'auto' needs calibration data",
        ),
    ],
)
def test_without_data_what_needs_data_is_refused(rng, tp, core, match):
    g, p = _mlp(rng)
    with pytest.raises(ValueError, match=match):
        jq.ptq.quantize_graph(g, p, None, core_config=core, target_platform=tp)


def test_group_size_errors_name_the_layer_or_the_mode(rng):
    g, p = _mlp(rng)
    tp = jq.core.TargetPlatform(weights_group_size=24, quantize_activations=False)
    with pytest.raises(ValueError, match=r"does not divide the input size 64 of layer 'fc1'"):
        jq.ptq.quantize_graph(g, p, None, core_config=QUIET, target_platform=tp)
    compat = jq.core.CoreConfig(
        progress=False, quantization_config=jq.core.QuantizationConfig(mct_compat=True)
    )
    xs = [rng.standard_normal((4, 64)).astype(np.float32)]
    with pytest.raises(ValueError, match="not available with mct_compat=True"):
        jq.ptq.quantize_graph(g, p, lambda: iter([xs]), core_config=compat, target_platform=W4A16)
    kl = jq.core.CoreConfig(progress=False, overrides={"fc1": {"weights_error_method": "kl"}})
    with pytest.raises(ValueError, match="layer 'fc1': weights_error_method 'kl' has no per-group"):
        jq.ptq.quantize_graph(g, p, None, core_config=kl, target_platform=W4A16)
    with pytest.raises(ValueError, match="needs weights_per_channel_threshold=True"):
        jq.core.TargetPlatform(weights_group_size=32, weights_per_channel_threshold=False)
    with pytest.raises(TypeError, match="weights_group_size must be an int or None"):
        jq.core.TargetPlatform(weights_group_size=32.0)


def test_conv_kernels_stay_per_channel_with_a_group_size(rng):
    g = jq.Graph(
        inputs=("x",),
        nodes=(jq.Node("conv", "conv", ("x",), {"stride": (1, 1), "padding": ((1, 1), (1, 1))}),),
        outputs=("conv",),
        input_shapes=((-1, 3, 6, 6),),
    )
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    p = {"conv": {"weight": w, "bias": np.zeros(4, np.float32)}}
    res = jq.ptq.quantize_graph(g, p, None, core_config=QUIET, target_platform=W4A16)
    (q,) = res.info.layers
    assert q.group_size is None and len(q.threshold) == 4


# -- torch: the quantized module against torch's own fake quant -------------------------------


@pytest.fixture(scope="module")
def block():
    """A tiny transformer-style block of torch.nn layers, fitted a few seeded steps to a
    random target (so that its weights are not at random init)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("jq_torch")
    torch.manual_seed(0)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.LayerNorm(32)
            self.up = torch.nn.Linear(32, 64)
            self.down = torch.nn.Linear(64, 32)
            self.head = torch.nn.Linear(32, 16)

        def forward(self, x):
            h = x + self.down(torch.nn.functional.gelu(self.up(self.norm(x))))
            return self.head(h)

    m = Block()
    x = torch.randn(64, 8, 32)
    y = torch.randn(64, 8, 16)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.mse_loss(m(x), y).backward()
        opt.step()
    return m.eval(), x


def _torch_reference(model, layers, n_bits: int, group: int):
    """``model`` with each Linear weight fake-quantized by torch's own per-channel op on its
    ``(out * G, group)`` rows, with the thresholds the PTQ call reported."""
    import copy

    import torch

    ref = copy.deepcopy(model)
    half = 2 ** (n_bits - 1)
    for name, mod in ref.named_modules():
        if isinstance(mod, torch.nn.Linear):
            w = mod.weight.data
            t = torch.tensor(layers[name].threshold, dtype=torch.float32)
            rows = w.reshape(-1, group)
            scale = (t / half).reshape(-1)
            zp = torch.zeros(scale.shape, dtype=torch.int32)
            q = torch.fake_quantize_per_channel_affine(rows, scale, zp, 0, -half, half - 1)
            mod.weight.data = q.reshape(w.shape)
    return ref


def test_torch_w4a16_module_equals_torch_fake_quant(block):
    import torch

    import jq_torch

    model, x = block
    data = lambda: ([x[i : i + 16]] for i in range(0, 64, 16))  # noqa: E731
    qmodel, info = jq.ptq.pytorch_post_training_quantization(
        model, data, core_config=NO_BC, target_platform_capabilities=W4A16
    )
    layers = {q.name: q for q in info.layers}
    assert {q.kind for q in info.layers} == {"weights"} and len(layers) == 3
    ref = _torch_reference(model, layers, 4, 16)
    with torch.no_grad():
        np.testing.assert_allclose(qmodel(x).numpy(), ref(x).numpy(), rtol=0, atol=2e-5)
    # without data: the module traced on one example, the same kernels
    graph, params = jq_torch.from_torch(model, (x[:2].numpy(),))
    res = jq.ptq.quantize_graph(graph, params, None, core_config=QUIET, target_platform=W4A16)
    free = jq_torch.to_torch(res.graph, res.params, res.info.layers)
    with torch.no_grad():
        np.testing.assert_allclose(free(x).numpy(), ref(x).numpy(), rtol=0, atol=2e-5)


def test_integer_onnx_formats_refuse_per_group_kernels(block, tmp_path):
    pytest.importorskip("onnx")
    import jq.exporter

    model, x = block
    data = lambda: iter([[x[:16]]])  # noqa: E731
    qmodel, _ = jq.ptq.pytorch_post_training_quantization(
        model, data, core_config=NO_BC, target_platform_capabilities=W4A16
    )
    for fmt in ("INT8", "MCTQ"):
        with pytest.raises(ValueError, match=rf"{fmt} format cannot express per-group.*'up'"):
            jq.exporter.pytorch_export_model(
                qmodel, tmp_path / "m.onnx", data, quantization_format=fmt
            )
    jq.exporter.pytorch_export_model(
        qmodel, tmp_path / "m.onnx", data, quantization_format="FAKELY_QUANT"
    )
    ort = pytest.importorskip("onnxruntime")
    import torch

    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x[:16].numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, qmodel(x[:16]).numpy(), rtol=0, atol=1e-4)
