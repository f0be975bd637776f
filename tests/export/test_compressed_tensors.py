"""``jq_torch.save_compressed_tensors``: a tiny Llama (random init, nothing downloaded)
quantized weights-only by jq, written as a compressed-tensors checkpoint, and loaded back by
``transformers`` with the ``compressed-tensors`` package decompressing it."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("compressed_tensors")
safetensors_torch = pytest.importorskip("safetensors.torch")

import jq.core  # noqa: E402
import jq.ptq  # noqa: E402
import jq_torch  # noqa: E402

NO_BC = jq.core.CoreConfig(
    progress=False,
    quantization_config=jq.core.QuantizationConfig(weights_bias_correction=False),
)


@pytest.fixture(scope="module")
def llama():
    """``LlamaForCausalLM`` of the issue's tiny config at seeded random init, and tokens."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        use_cache=False,  # torch.export cannot return a DynamicCache
    )
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(1))
    return model, ids


@pytest.fixture(scope="module")
def w8a16(llama):
    """W8A16 per channel, without calibration data: ``(graph, params, info, module)``."""
    model, ids = llama
    graph, params = jq_torch.from_torch(model, (ids[:2].numpy(),))
    tp = jq.core.TargetPlatform(weights_n_bits=8, quantize_activations=False)
    res = jq.ptq.quantize_graph(graph, params, None, core_config=NO_BC, target_platform=tp)
    return (
        res.graph,
        res.params,
        res.info,
        jq_torch.to_torch(res.graph, res.params, res.info.layers),
    )


@pytest.fixture(scope="module")
def w4a16(llama):
    """W4A16 in groups of 32 by the torch PTQ call with two calibration batches."""
    model, ids = llama
    tp = jq.core.TargetPlatform(weights_n_bits=4, weights_group_size=32, quantize_activations=False)
    data = lambda: ([ids[i : i + 2]] for i in (0, 2))  # noqa: E731
    return jq.ptq.pytorch_post_training_quantization(
        model, data, core_config=NO_BC, target_platform_capabilities=tp
    )


def _jq_levels(w: np.ndarray, threshold, n_bits: int, group: int | None) -> np.ndarray:
    """jq's integer levels of the float kernel ``w (out, in)``, in plain NumPy: scale
    ``t / 2^(n-1)`` per channel or per group, ``round(w * (1/scale))`` half to even (float32
    reciprocal, as jq's fake quant), clipped to ``[-2^(n-1), 2^(n-1) - 1]``."""
    half = np.float32(2 ** (n_bits - 1))
    scale = np.asarray(threshold, np.float32).reshape(-1, 1) / half
    rows = w.reshape(scale.shape[0], -1)
    return np.clip(np.round(rows * (np.float32(1) / scale)), -half, half - 1).reshape(w.shape)


@pytest.mark.parametrize(("case", "n_bits", "group"), [("w4a16", 4, 32), ("w8a16", 8, None)])
def test_checkpoint_loads_back_with_jq_levels_and_logits(
    llama, case, n_bits, group, request, tmp_path
):
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

    model, ids = llama
    fixture = request.getfixturevalue(case)
    module, info = (fixture[0], fixture[1]) if case == "w4a16" else (fixture[3], fixture[2])
    qconfig = jq_torch.save_compressed_tensors((module, info), model, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["quantization_config"] == qconfig
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert qconfig["quant_method"] == "compressed-tensors"
    assert qconfig["format"] == "pack-quantized" and qconfig["ignore"] == []
    (group_0,) = qconfig["config_groups"].values()
    assert group_0["targets"] == ["Linear"] and group_0["input_activations"] is None
    weights = {k: group_0["weights"][k] for k in ("num_bits", "type", "symmetric", "strategy")}
    strategy = "group" if group else "channel"
    assert weights == {"num_bits": n_bits, "type": "int", "symmetric": True, "strategy": strategy}
    assert group_0["weights"]["group_size"] == group

    # the file: jq's integer levels and scales exactly, every float tensor as it was
    stored = safetensors_torch.load_file(str(tmp_path / "model.safetensors"))
    layers = {q.name: q for q in info.layers}
    assert len(layers) == 15  # 7 Linear per block x 2, and lm_head
    float_sd = model.state_dict()
    for name, layer in layers.items():
        w = float_sd[f"{name}.weight"].numpy()
        assert f"{name}.weight" not in stored
        assert stored[f"{name}.weight_shape"].tolist() == list(w.shape)
        scale = np.asarray(layer.threshold, np.float32).reshape(w.shape[0], -1) / 2 ** (n_bits - 1)
        np.testing.assert_array_equal(stored[f"{name}.weight_scale"].numpy(), scale)
        levels = unpack_from_int32(stored[f"{name}.weight_packed"], n_bits, w.shape)
        expected = _jq_levels(w, layer.threshold, n_bits, group)
        np.testing.assert_array_equal(levels.numpy(), expected)
        # the module's kernel is those levels times the scale (jq's fake quant)
        kernel = module.node_params(name)["weight"].numpy()
        rep = np.repeat(scale, w.shape[1] // scale.shape[1], axis=1)
        np.testing.assert_array_equal(kernel, expected * rep)
    for key in ("model.embed_tokens.weight", "model.norm.weight"):
        assert torch.equal(stored[key], float_sd[key])
    quant_keys = {
        f"{n}.{p}" for n in layers for p in ("weight_packed", "weight_scale", "weight_shape")
    }
    assert set(stored) == quant_keys | {k for k in float_sd if k.rsplit(".", 1)[0] not in layers}

    # transformers + compressed-tensors: the decompressed kernels are jq's bit for bit, so the
    # logits differ from jq's module only by the order of float32 ops in the two forward
    # passes (same torch ops; measured 0.0): 1e-5 on logits of size ~1.
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        got = loaded(ids).logits
        want = module(ids)
        float_logits = model(ids).logits
    for name in layers:
        assert torch.equal(loaded.get_submodule(name).weight, module.node_params(name)["weight"])
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5)
    assert float((float_logits - want).abs().max()) > 1e-3  # the kernels are quantized


def test_errors_name_the_problem(llama, w8a16, tmp_path):
    model, _ = llama
    graph, params, info, module = w8a16
    save = jq_torch.save_compressed_tensors
    with pytest.raises(ValueError, match="does not exist"):
        save(module, model, tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        save(module, model, tmp_path / "file")
    with pytest.raises(TypeError, match="must be the transformers PreTrainedModel"):
        save(module, torch.nn.Linear(2, 2), tmp_path)
    with pytest.raises(TypeError, match="quantized must be the JQModule"):
        save(model, model, tmp_path)

    def with_layers(layers, p=params):
        return jq_torch.to_torch(graph, p, layers)

    act = jq.core.LayerInfo(
        name="input_ids", kind="activation", op="input", n_bits=8, method="power_of_two",
        error_method="mse", signed=True, threshold=1.0,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"W<n>A16 only here .* activations are quantized"):
        save(with_layers((*info.layers, act)), model, tmp_path)
    embed = dataclasses.replace(info.layers[0], name="model.embed_tokens", op="embedding")
    with pytest.raises(
        ValueError, match=r"Linear kernels only.*'model.embed_tokens' \(embedding\)"
    ):
        save(with_layers((*info.layers, embed)), model, tmp_path)
    uniform = [dataclasses.replace(q, method="uniform") for q in info.layers]
    with pytest.raises(ValueError, match="uniform \\(asymmetric\\) kernels"):
        save(with_layers(uniform), model, tmp_path)
    q_proj = "model.layers.0.self_attn.q_proj"
    biased = {**params, q_proj: {**params[q_proj], "bias": np.full(64, 0.5, np.float32)}}
    with pytest.raises(ValueError, match=f"bias correction gave '{q_proj}' a bias"):
        save(with_layers(info.layers, biased), model, tmp_path)
    float_params = jq_torch.from_torch(model, (np.zeros((1, 16), np.int64),))[1]
    with pytest.raises(ValueError, match="not on its quantization grid"):
        save(with_layers(info.layers, float_params), model, tmp_path)
    assert os.listdir(tmp_path) == ["file"]  # nothing written by a refused call


def test_tied_lm_head_stays_float_and_loads_back(tmp_path):
    """With ``tie_word_embeddings=True`` the head's weight is the embedding's: kept float it
    is written once and tied again on load; quantized it is refused, naming the override."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        use_cache=False,
        tie_word_embeddings=True,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(1))
    graph, params = jq_torch.from_torch(model, (ids.numpy(),))
    head = [n.name for n in graph.nodes if n.op == "linear"][-1]  # "lm_head_1": tied
    core = dataclasses.replace(NO_BC, overrides={head: {"enable_weights_quantization": False}})
    tp = jq.core.TargetPlatform(weights_n_bits=4, weights_group_size=32, quantize_activations=False)
    res = jq.ptq.quantize_graph(graph, params, None, core_config=core, target_platform=tp)
    module = jq_torch.to_torch(res.graph, res.params, res.info.layers)
    qconfig = jq_torch.save_compressed_tensors(module, model, tmp_path)
    assert qconfig["ignore"] == ["lm_head"]
    stored = safetensors_torch.load_file(str(tmp_path / "model.safetensors"))
    assert "model.embed_tokens.weight" in stored and "lm_head.weight" not in stored
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids).logits.numpy(), module(ids).numpy(), atol=1e-5)
    quantized_head = dataclasses.replace(res.info.layers[0], name=head)
    bad = jq_torch.to_torch(res.graph, res.params, (*res.info.layers, quantized_head))
    with pytest.raises(ValueError, match=rf"\['{head}'\] quantize Linear weights tied"):
        jq_torch.save_compressed_tensors(bad, model, tmp_path)
