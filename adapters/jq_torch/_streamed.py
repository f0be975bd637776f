"""``quantize_weights_streamed``: weights-only quantization of a torch model's Linear layers,
one matrix at a time, written back into the model's own parameters.

The PTQ call (``pytorch_post_training_quantization``) converts the whole model to a jq graph
whose params are a second copy of every weight; a model that fits in memory once but not
twice (a billion parameters on a 23 GB machine in float32: 4 GB each, plus the search's
buffers) cannot take that route. Here each ``torch.nn.Linear`` is read (its weight as a
float32 array: one matrix's copy), searched by jq's functional API (``jq.weights_qparams``:
the same compiled tile programs the weights-only PTQ path runs), fake-quantized
(``jq.fake_quant``) and written back in place, before the next is read: the extra memory is
one matrix and the search's tiles, whatever the model's size.

A matrix is searched in slices of whole output rows of at most ``MAX_SLICE_ELEMENTS``
(per-channel and per-group parameters do not mix rows, so the result is the whole matrix's):
larger tensors leave the search's fixed tiles (one compiled program per shape, measured 6-9 s
for a 2048 x 8192 matrix against 4 x 1.3 s for its four 512-row slices).

HMSE here uses layer-wise scores (``jq/_src/ptq/layer_hessian.py``'s estimator): forward
hooks on the Linear layers accumulate ``sum x_i^2`` per input column over the ``calibration``
batches (one float model pass before any weight changes), and each kernel's error is weighted
by ``mean x_i^2``. The whole-model estimator needs the model as a jq graph, so it is not
offered here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import torch

import jq

from ._compressed_tensors import _tied_linears

_FN = "quantize_weights_streamed"
# jq's weight search packs tensors of up to 4M elements into its fixed tiles (weights.py).
MAX_SLICE_ELEMENTS = 2**22
_METHODS = ("symmetric", "power_of_two")
_ERRORS = ("mse", "mae", "lp", "noclipping", "hmse")


class StreamedLayer(NamedTuple):
    """One quantized Linear.

    Attributes:
      threshold: float32 ``(out, in / group_size)`` per group, ``(out, 1)`` per channel.
      seconds: wall time of its read, search and write.
    """

    threshold: np.ndarray
    seconds: float


class StreamedResult(NamedTuple):
    """What :func:`quantize_weights_streamed` did.

    Attributes:
      layers: ``{module name: StreamedLayer}``, in the model's module order.
      skipped: the Linear modules left float (``skip`` matches and tied weights).
      n_params: the number of weights quantized.
      n_bits, group_size, method, error_method: the settings.
      seconds: total wall time (the calibration pass included).
    """

    layers: dict[str, StreamedLayer]
    skipped: tuple[str, ...]
    n_params: int
    n_bits: int
    group_size: int | None
    method: str
    error_method: str
    seconds: float


def _check(model, n_bits, group_size, method, error_method, calibration) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{_FN}: model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(n_bits, bool) or not isinstance(n_bits, int) or not 1 <= n_bits <= 8:
        raise ValueError(f"{_FN}: n_bits must be an int in 1..8, got {n_bits!r}")
    if group_size is not None and (
        isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1
    ):
        raise ValueError(f"{_FN}: group_size must be None or an int >= 1, got {group_size!r}")
    if method not in _METHODS:
        raise ValueError(f"{_FN}: method must be one of {_METHODS}, got {method!r}")
    if error_method not in _ERRORS:
        raise ValueError(f"{_FN}: error_method must be one of {_ERRORS}, got {error_method!r}")
    if (error_method == "hmse") != (calibration is not None):
        raise ValueError(
            f"{_FN}: error_method='hmse' needs calibration batches (its layer-wise Hessian "
            "scores are the Linear inputs' mean squares), and calibration is used by 'hmse' "
            f"only; got error_method={error_method!r}, calibration "
            f"{'given' if calibration is not None else 'None'}"
        )


def _targets(model: torch.nn.Module, skip: Iterable[str], group_size: int | None):
    """``(Linear modules to quantize by name, skipped names)``, checked."""
    skip = tuple(skip)
    tied = _tied_linears(model)
    todo, skipped = {}, []
    for name, m in model.named_modules():
        if not isinstance(m, torch.nn.Linear):
            continue
        if name in tied or any(name == s or name.endswith("." + s) for s in skip):
            skipped.append(name)
            continue
        todo[name] = m
    if not todo:
        raise ValueError(f"{_FN}: the model has no Linear layer to quantize (skipped: {skipped})")
    if group_size is not None:
        bad = [f"{n} (in {m.in_features})" for n, m in todo.items() if m.in_features % group_size]
        if bad:
            raise ValueError(
                f"{_FN}: group_size={group_size} does not divide the input size of {bad[:5]}; "
                "skip them (skip=...) or choose another group size"
            )
    return todo, tuple(skipped)


def input_mean_squares(
    model: torch.nn.Module, linears: dict[str, torch.nn.Linear], calibration: Iterable[Any]
) -> dict[str, np.ndarray]:
    """``{name: mean x_i^2 (in_features,)}`` of each Linear's inputs over ``calibration``
    (each batch a tensor passed as ``model(batch)`` or a dict passed as ``model(**batch)``).

    Raises:
      ValueError: no batch, or a Linear that no batch reached.
    """
    sums = {n: torch.zeros(m.in_features, dtype=torch.float64) for n, m in linears.items()}
    counts = dict.fromkeys(linears, 0)

    def hook(name):
        def fn(_module, inputs, _output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).to(torch.float64)
            sums[name] += torch.sum(x * x, dim=0).cpu()
            counts[name] += x.shape[0]

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in linears.items()]
    n_batches = 0
    try:
        with torch.no_grad():
            for batch in calibration:
                model(**batch) if isinstance(batch, dict) else model(batch)
                n_batches += 1
    finally:
        for h in handles:
            h.remove()
    if not n_batches:
        raise ValueError(f"{_FN}: calibration yielded no batch")
    unseen = [n for n, c in counts.items() if c == 0]
    if unseen:
        raise ValueError(f"{_FN}: no calibration batch reached {unseen[:5]}; skip them")
    return {n: (sums[n] / counts[n]).numpy().astype(np.float32) for n in linears}


def _quantize_rows(w: np.ndarray, h: np.ndarray | None, settings: dict):
    """``(fake-quantized w, threshold)`` of one slice of whole rows."""
    hessian = None if h is None else np.broadcast_to(h, w.shape)
    qp = jq.weights_qparams(w, hessian=hessian, **settings)
    q = jq.fake_quant(
        w, qp, n_bits=settings["n_bits"], group_size=settings["group_size"], channel_axis=0
    )
    return np.asarray(q), np.asarray(qp.threshold, np.float32).reshape(w.shape[0], -1)


def _quantize_linear(linear: torch.nn.Linear, h: np.ndarray | None, settings: dict):
    """Search and write one Linear's weight in place, slice by slice; its thresholds."""
    weight = linear.weight
    rows_per = max(1, MAX_SLICE_ELEMENTS // weight.shape[1])
    thresholds = []
    with torch.no_grad():
        for r0 in range(0, weight.shape[0], rows_per):
            part = weight[r0 : r0 + rows_per]
            w = part.detach().to(device="cpu", dtype=torch.float32).numpy()
            q, t = _quantize_rows(w, h, settings)
            part.copy_(torch.tensor(q, dtype=part.dtype))  # a copy: jax arrays are read-only
            thresholds.append(t)
    return np.concatenate(thresholds)


def quantize_weights_streamed(
    model: torch.nn.Module,
    *,
    n_bits: int = 4,
    group_size: int | None = 128,
    method: str = "symmetric",
    error_method: str = "mse",
    calibration: Iterable[Any] | None = None,
    skip: Iterable[str] = ("lm_head",),
) -> StreamedResult:
    """Quantize every ``torch.nn.Linear`` weight of ``model`` in place, one layer at a time.

    Weights-only (W4A16 with the defaults, W8A16 with ``n_bits=8``): each weight is replaced
    by its fake-quantized value (same dtype, on the grid of the returned thresholds); nothing
    else changes. Peak memory is the model plus one float32 slice of at most
    ``MAX_SLICE_ELEMENTS`` weights and the search's buffers (the model is never copied).

    Args:
      model: any torch model (e.g. a ``transformers`` causal LM); modified in place.
      n_bits: kernel bit width, 1..8.
      group_size: one threshold per ``group_size`` consecutive inputs of each output row
        (must divide every quantized layer's ``in_features``); ``None``: per output channel.
      method: ``"symmetric"`` or ``"power_of_two"`` (signed grids).
      error_method: ``"mse"``, ``"mae"``, ``"lp"``, ``"noclipping"``, or ``"hmse"`` (with
        ``calibration``: layer-wise Hessian scores, the inputs' mean squares).
      calibration: ``"hmse"`` only: batches run through the float model first (each a tensor,
        ``model(batch)``, or a dict, ``model(**batch)``).
      skip: module names (or name suffixes) left float; Linear weights tied to another tensor
        (``tie_word_embeddings``) are always left float.

    Returns:
      :class:`StreamedResult`: each layer's thresholds and time, the skipped layers, totals.

    Raises:
      TypeError / ValueError: a model that is not a torch module or has no Linear to
        quantize, bad settings, a group size that does not divide a layer's input size,
        ``"hmse"`` without calibration (or calibration without ``"hmse"``).

    Example:
      See ``docs/guides/llm.md`` ("Models that do not fit twice").
    """
    _check(model, n_bits, group_size, method, error_method, calibration)
    t0 = time.perf_counter()
    linears, skipped = _targets(model, skip, group_size)
    scores = None
    if calibration is not None:
        scores = input_mean_squares(model, linears, calibration)
    settings = {
        "n_bits": n_bits,
        "method": method,
        "error_method": error_method,
        "group_size": group_size,
    }
    layers = {}
    for name, linear in linears.items():
        t = time.perf_counter()
        h = None if scores is None else scores[name]
        threshold = _quantize_linear(linear, h, settings)
        layers[name] = StreamedLayer(threshold, time.perf_counter() - t)
    n_params = sum(m.weight.numel() for m in linears.values())
    seconds = time.perf_counter() - t0
    return StreamedResult(
        layers, skipped, n_params, n_bits, group_size, method, error_method, seconds
    )
