"""The torch side of ``jq.exporter.pytorch_export_model``: the module checked, its params and
the example batch as NumPy arrays for jq's ONNX writer, or its own TorchScript trace."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jq._src.export.files import atomic_path, check_writable
from jq._src.export.formats import QuantizationFormat
from jq._src.export.onnx_file import write_onnx

from ._numpy import numpy_params, to_numpy
from ._to_torch import JQModule


def _check_model(model: Any, fn: str) -> JQModule:
    """The model, if it is a jq-quantized module (a :class:`JQModule` with quantizers)."""
    if not isinstance(model, JQModule):
        raise TypeError(
            f"{fn}: model must be the module jq.ptq.pytorch_post_training_quantization "
            f"returned (a jq_torch.JQModule), got {type(model).__module__}."
            f"{type(model).__name__}"
        )
    # A weights-only module (TargetPlatform(quantize_activations=False)) has quantized
    # kernels in its records but no fake_quant node.
    has_kernels = any(q.kind == "weights" for q in model.quant_layers)
    if not model.quant_layers or not (
        has_kernels or any(n.op == "fake_quant" for n in model.graph.nodes)
    ):
        raise TypeError(f"{fn}: model is a float jq module (no quantizers); quantize it first")
    return model


def first_batch(repr_dataset: Callable[[], Any], n_inputs: int, fn: str) -> list[np.ndarray]:
    """The first batch of ``repr_dataset`` as NumPy arrays (floats as float32)."""
    if not callable(repr_dataset):
        raise TypeError(f"{fn}: repr_dataset must be a callable returning batches")
    try:
        batch = next(iter(repr_dataset()))
    except StopIteration:
        raise ValueError(f"{fn}: repr_dataset yielded no batch") from None
    items = list(batch) if isinstance(batch, (list, tuple)) else [batch]
    if len(items) != n_inputs:
        raise ValueError(f"{fn}: a batch has {len(items)} inputs; the model takes {n_inputs}")
    out = []
    for x in items:
        a = np.asarray(to_numpy(x))
        out.append(a.astype(np.float32) if a.dtype.kind == "f" else a)
    return out


def export_module(
    model: Any,
    save_model_path: str | os.PathLike,
    repr_dataset: Callable[[], Any],
    *,
    fmt: QuantizationFormat | None,
    opset: int | None,
    output_names: Sequence[str] | None,
    fn: str,
) -> None:
    """Write ``model`` as ONNX in format ``fmt``, or as TorchScript for ``fmt=None`` (the
    formats checked by ``jq.exporter.pytorch_export_model``, which documents the rest)."""
    module = _check_model(model, fn)
    path = check_writable(save_model_path, fn)
    example = first_batch(repr_dataset, len(module.graph.inputs), fn)
    if fmt is None:
        return _write_torchscript(module, path, example)
    params = {
        n.name: numpy_params(module.node_params(n.name))
        for n in module.graph.nodes
        if module.node_params(n.name)
    }
    write_onnx(
        path,
        module.graph,
        params,
        module.quant_layers,
        example,
        fmt=fmt,
        opset=opset,
        output_names=output_names,
        fn=fn,
    )


def _write_torchscript(model: JQModule, path: str, example: list[np.ndarray]) -> None:
    """The module's TorchScript trace, written whole or not at all.

    torch deprecates TorchScript (2.14 does): ``torch.jit.trace``, ``trace_method`` and
    ``save`` each warn (``FutureWarning``) on every call, and no other API writes the format.
    The user who asks for ``TORCHSCRIPT`` has chosen it, so those three notices are silenced
    here, by their text, for this call only (``pytorch_export_model``'s docstring says that
    torch deprecates the format).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", r"`torch\.jit\.\w+` is deprecated", category=FutureWarning
        )
        with atomic_path(path) as tmp:
            model.save_torchscript(tmp, example)
