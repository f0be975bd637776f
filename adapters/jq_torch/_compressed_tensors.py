"""``save_compressed_tensors``: a weights-only quantized transformers model as a
compressed-tensors checkpoint, the folder ``transformers`` and vLLM load.

The folder holds ``config.json`` (the model's config with a ``quantization_config`` block:
``quant_method: "compressed-tensors"``, one config group per distinct kernel grid, ``ignore``:
the Linear modules left float) and ``model.safetensors`` (each quantized Linear as
``weight_packed`` + ``weight_scale`` + ``weight_shape``, every other
tensor as it is). The compressed-tensors library does the packing and writes the config block
(its ``PackedQuantizationCompressor`` / format registry and ``ModelCompressor.update_config``),
so the bit layout and the keys are the ones its own decompressor and vLLM's kernels read,
not a second implementation of them.

jq's grids map exactly (``jq/_src/select/quantizers.py`` ``affine_grid``): a signed threshold
``t`` of ``n`` bits (symmetric or power-of-two) is ``scale = t / 2^(n-1)`` (exact: a power of
two), levels ``[-2^(n-1), 2^(n-1) - 1]``: compressed-tensors' symmetric ``int`` grid. Uniform
(asymmetric) kernels would map too (zero point ``z - 2^(n-1)``), but are refused: the library
(0.20.1) packs their zero points 8 (4-bit) to an int32 along the output axis, and transformers'
loader (5.25) then rejects them (it expects ``(out, G)``: a size mismatch, the symptom of
llm-compressor issue 1618), so such a folder would not load.

Rounding: jq's fake quant is ``clip(round(x * (1/scale)))`` (float32 reciprocal, half to
even); the library quantizes with ``round(clamp(x / scale))`` (true division, half to even;
clamping to integer bounds first gives the same levels). The two can differ on a value within
an ulp of a half step, so the library is handed jq's already fake-quantized kernel
``q * scale``, whose ``/ scale`` lands within a few ulps of the integer ``q`` (``|q| <= 2^7``):
the checkpoint holds jq's levels exactly, and decompresses to jq's kernel bit for bit where
the scale is stored in float32 (a float32 model; a bf16/fp16 model's scales are stored in its
dtype, as compressed-tensors initialises them, which rounds them).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

import jq.exporter
from jq._src.runtime.paths import atomic_path, check_writable
from jq.core import LayerInfo

from ._to_torch import JQModule

_FN = "save_compressed_tensors"
_WEIGHTS_FILE = "model.safetensors"
_GRID_TOLERANCE = 1e-3  # |w / scale - round(w / scale)|: the module's kernel sits on its grid


def _import(name: str) -> Any:
    try:
        return __import__(name, fromlist=["_"])
    except ImportError as e:
        raise ImportError(
            f"{_FN}: needs the {name.replace('_', '-')} package (pip install compressed-tensors "
            f"safetensors transformers): {e}"
        ) from e


def _check_args(quantized: Any, model: Any, folder: Any) -> tuple[JQModule, str]:
    """The module (from a module or the PTQ call's ``(module, info)``) and the folder."""
    if isinstance(quantized, tuple) and quantized and isinstance(quantized[0], JQModule):
        quantized = quantized[0]
    if not isinstance(quantized, JQModule):
        raise TypeError(
            f"{_FN}: quantized must be the JQModule jq.ptq.pytorch_post_training_quantization "
            f"returned (or its (module, info) pair), got {type(quantized).__name__}"
        )
    transformers = _import("transformers")
    if not isinstance(model, transformers.PreTrainedModel):
        raise TypeError(
            f"{_FN}: model must be the transformers PreTrainedModel that was quantized (its "
            "config becomes config.json, and its module names and float tensors the "
            f"checkpoint's), got {type(model).__module__}.{type(model).__name__}"
        )
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"{_FN}: folder must be a path, got {type(folder).__name__}")
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{_FN}: folder {folder!r} is a file, not a folder")
    if not os.path.isdir(folder):
        raise ValueError(f"{_FN}: folder {folder!r} does not exist (jq creates no folders)")
    check_writable(os.path.join(folder, _WEIGHTS_FILE), _FN, "folder")
    return quantized, folder


def _kernel_layers(module: JQModule, model: Any) -> dict[str, LayerInfo]:
    """The quantized kernels by module name, after checking the export can express them."""
    acts = [q.name for q in module.quant_layers if q.kind != "weights"]
    if acts or any(n.op == "fake_quant" for n in module.graph.nodes):
        raise ValueError(
            f"{_FN}: compressed-tensors W<n>A16 only here (weights-only), but activations are "
            f"quantized ({len(acts)} quantizers, e.g. {acts[:3]}); quantize with "
            "jq.core.TargetPlatform(quantize_activations=False)"
        )
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    kernels = {q.name: q for q in module.quant_layers}
    if not kernels:
        raise ValueError(f"{_FN}: the module has no quantized kernels")
    tied = _tied_linears(model)
    # A Linear whose weight is tied (tie_word_embeddings) converts as a node named with a
    # suffix ("lm_head_1"): the weight is the embedding's, which stays float in the checkpoint.
    if tied_hits := [n for n in kernels if re.sub(r"_\d+$", "", n) in tied]:
        raise ValueError(
            f"{_FN}: {tied_hits} quantize Linear weights tied to another tensor (e.g. "
            "tie_word_embeddings=True); a checkpoint cannot hold a quantized copy of a tied "
            f"weight: keep them float (overrides={{{tied_hits[0]!r}: "
            "{'enable_weights_quantization': False}}) or untie the model"
        )
    bad = [f"{n!r} ({q.op})" for n, q in kernels.items() if q.op != "linear" or n not in linears]
    if bad:
        raise ValueError(
            f"{_FN}: compressed-tensors here holds torch.nn.Linear kernels only; not Linear "
            f"modules of the model: {', '.join(bad)} (keep them float with "
            "overrides={name: {'enable_weights_quantization': False}})"
        )
    uniform = [n for n, q in kernels.items() if q.method == "uniform"]
    if uniform:
        raise ValueError(
            f"{_FN}: uniform (asymmetric) kernels, e.g. {uniform[:3]}: transformers cannot "
            "load compressed-tensors' packed zero points (see this module's docstring); "
            "quantize kernels symmetric or power_of_two"
        )
    unsigned = [n for n, q in kernels.items() if not q.signed]
    if unsigned:
        raise ValueError(
            f"{_FN}: unsigned kernel grids have no compressed-tensors form: {unsigned}"
        )
    return kernels


def _tied_linears(model: Any) -> set[str]:
    """Names of the Linear modules whose weight shares storage with another parameter."""
    owners: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(p.data_ptr(), []).append(name.rsplit(".", 1)[0])
    return {
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and len(owners.get(m.weight.data_ptr(), ())) > 1
    }


def _scheme(layer: LayerInfo, ct: Any) -> Any:
    """The compressed-tensors ``QuantizationArgs`` of a kernel's symmetric grid."""
    if layer.group_size is not None:
        strategy = "group"
    else:
        per_channel = np.size(layer.threshold) > 1 or layer.channel_axis is not None
        strategy = "channel" if per_channel else "tensor"
    return ct.quantization.QuantizationArgs(
        num_bits=layer.n_bits,
        type="int",
        symmetric=True,
        strategy=strategy,
        group_size=layer.group_size,
    )


def _scale(layer: LayerInfo, weight: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """``weight_scale``: ``(out, G)`` per group, ``(out, 1)`` per channel, ``(1,)`` per
    tensor, in ``dtype``; after checking ``weight (out, in)`` sits on that grid."""
    grid = jq.exporter.scale_zero_point(layer.n_bits, threshold=layer.threshold, signed=True)
    scale = grid.scale.astype(np.float32).reshape(-1)
    rows = weight.reshape(scale.size, -1).astype(np.float64)
    levels = rows / scale[:, None].astype(np.float64)
    off = float(np.max(np.abs(levels - np.round(levels)), initial=0.0))
    if off > _GRID_TOLERANCE:
        raise ValueError(
            f"{_FN}: the kernel of {layer.name!r} is not on its quantization grid (off by "
            f"{off:.3g} steps); pass the module the PTQ call returned"
        )
    shape = (1,) if scale.size == 1 else (weight.shape[0], -1)
    return torch.from_numpy(scale.reshape(shape)).to(dtype)


def _bias(name: str, bias: torch.Tensor | None, linear: torch.nn.Linear) -> torch.Tensor | None:
    """The module's bias (bias correction may have moved it: not the model's), or ``None``.

    Raises:
      ValueError: bias correction gave a bias-free Linear a nonzero bias, which the model's
        architecture (``bias=False``) has no tensor for: transformers would drop it.
    """
    if bias is None:
        return None
    if linear.bias is not None:
        return bias.detach().cpu().to(linear.bias.dtype)
    if torch.count_nonzero(bias):
        raise ValueError(
            f"{_FN}: bias correction gave {name!r} a bias, but the model's Linear has none "
            "(bias=False), so the checkpoint cannot hold it; quantize with "
            "jq.core.QuantizationConfig(weights_bias_correction=False) or without data"
        )
    return None


def _compress(
    module: JQModule, model: Any, kernels: Mapping[str, LayerInfo], ct: Any
) -> tuple[dict[str, torch.Tensor], list[tuple[str, Any]]]:
    """Each kernel's compressed tensors by state-dict key, and ``(name, scheme)`` pairs."""
    mods = dict(model.named_modules())
    tensors: dict[str, torch.Tensor] = {}
    schemes = []
    for name, layer in kernels.items():
        params = module.node_params(name)
        linear = mods[name]
        w = params["weight"].detach().cpu().float()
        if tuple(w.shape) != tuple(linear.weight.shape):
            raise ValueError(
                f"{_FN}: {name!r} is {tuple(linear.weight.shape)} in the model but "
                f"{tuple(w.shape)} in the quantized module: not the model it came from"
            )
        dtype = linear.weight.dtype
        scheme = ct.quantization.QuantizationScheme(targets=[name], weights=_scheme(layer, ct))
        scheme.format = ct.compressors.format.infer_module_format(torch.nn.Linear, scheme)
        state = {"weight": w.to(dtype), "weight_scale": _scale(layer, w.numpy(), dtype)}
        compressor = ct.compressors.BaseCompressor.get_value_from_registry(scheme.format.value)
        for key, value in compressor.compress(state, scheme).items():
            tensors[f"{name}.{key}"] = value.contiguous()
        bias = _bias(name, params.get("bias"), linear)
        if bias is not None:
            tensors[f"{name}.bias"] = bias
        schemes.append((name, scheme))
    return tensors, schemes


def _quantization_config(schemes: list[tuple[str, Any]], model: Any, ct: Any) -> Any:
    """compressed-tensors' ``QuantizationConfig``: one group per distinct grid. A single grid
    targets ``Linear`` with the float Linear modules in ``ignore``; several list names."""
    groups: dict[str, tuple[Any, list[str]]] = {}
    for name, scheme in schemes:
        key = json.dumps([scheme.weights.model_dump(mode="json"), scheme.format.value])
        groups.setdefault(key, (scheme, []))[1].append(name)
    quantized = {n for n, _ in schemes}
    ignore = [
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n not in quantized
    ]
    config_groups = {}
    for i, (scheme, names) in enumerate(groups.values()):
        targets = ["Linear"] if len(groups) == 1 else names
        config_groups[f"group_{i}"] = scheme.model_copy(update={"targets": targets})
    formats = {s.format.value for s, _ in groups.values()}
    return ct.quantization.QuantizationConfig(
        config_groups=config_groups,
        format=formats.pop() if len(formats) == 1 else "mixed-precision",
        quantization_status="compressed",
        ignore=ignore,
    )


def _float_tensors(model: Any, replaced: set[str]) -> dict[str, torch.Tensor]:
    """The model's other state-dict tensors as they are; of tensors sharing storage (tied
    embeddings) the first name only, as transformers' own ``save_pretrained`` writes them."""
    out: dict[str, torch.Tensor] = {}
    seen: dict[tuple[int, int], str] = {}
    for key, value in model.state_dict().items():
        if key in replaced:
            continue
        ident = (value.untyped_storage().data_ptr(), value.storage_offset())
        if ident in seen and value.numel():
            continue
        seen[ident] = key
        out[key] = value.detach().cpu().contiguous()
    return out


def save_compressed_tensors(quantized: Any, model: Any, folder: str | os.PathLike) -> dict:
    """Write a weights-only quantized transformers model as a compressed-tensors checkpoint.

    ``transformers.AutoModelForCausalLM.from_pretrained(folder)`` (with the
    ``compressed-tensors`` package installed) and vLLM load the folder; the Linear kernels
    decompress to jq's fake-quantized kernels (exactly, for a float32 model: see the module
    docstring of ``jq_torch/_compressed_tensors.py``).

    Args:
      quantized: the :class:`JQModule` that :func:`jq.ptq.pytorch_post_training_quantization`
        returned for ``model`` (or its ``(module, info)`` pair), quantized weights-only
        (``jq.core.TargetPlatform(weights_n_bits=4, weights_group_size=128,
        quantize_activations=False)``: W4A16; 8 bits: W8A16; per group, per channel or per
        tensor; symmetric or power-of-two kernels of 1..8 bits).
      model: the float ``transformers.PreTrainedModel`` it was quantized from: its config,
        module names and every tensor that is not a quantized kernel go into the folder.
      folder: an existing, writable folder; ``config.json`` and ``model.safetensors`` in it
        are replaced (each written whole or not at all).

    Returns:
      The ``quantization_config`` block written into ``config.json`` (a dict).

    Raises:
      TypeError: ``quantized`` is not a JQModule, or ``model`` not a PreTrainedModel.
      ValueError: a missing / unwritable folder, quantized activations (compressed-tensors
        W<n>A16 only here), a quantized kernel that is not a ``torch.nn.Linear`` of the model
        or not on its grid, uniform (asymmetric) or unsigned kernels, a quantized
        Linear whose weight is tied to another tensor (``tie_word_embeddings``).
      ImportError: ``compressed-tensors``, ``safetensors`` or ``transformers`` is missing.

    Example:
      See ``docs/guides/llm.md``: a tiny Llama quantized W4A16, saved, and loaded back with
      ``AutoModelForCausalLM.from_pretrained``.
    """
    module, folder = _check_args(quantized, model, folder)
    ct = _import("compressed_tensors")
    st = _import("safetensors.torch")
    kernels = _kernel_layers(module, model)
    compressed, schemes = _compress(module, model, kernels, ct)
    qconfig = _quantization_config(schemes, model, ct)
    replaced = {f"{n}.{p}" for n in kernels for p in ("weight", "bias")}
    tensors = {**_float_tensors(model, replaced), **compressed}
    with atomic_path(os.path.join(folder, _WEIGHTS_FILE)) as tmp:
        st.save_file(tensors, tmp, metadata={"format": "pt"})
    config = json.loads(model.config.to_json_string(use_diff=False))
    config["architectures"] = [type(model).__name__]
    # The library writes its own block (version, format, groups) into a config.json: done in a
    # private folder beside the destination, then moved over it whole.
    with tempfile.TemporaryDirectory(prefix=".jq-", dir=folder) as tmp_dir:
        path = os.path.join(tmp_dir, "config.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        ct.compressors.ModelCompressor(quantization_config=qconfig).update_config(tmp_dir)
        with open(path, encoding="utf-8") as f:
            written = json.load(f)
        os.replace(path, os.path.join(folder, "config.json"))
    return written["quantization_config"]
