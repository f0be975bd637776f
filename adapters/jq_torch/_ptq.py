"""The torch front end of the PTQ pipeline: MCT's ``pytorch_post_training_quantization``.

It opens the representative data (tensors become NumPy arrays here), converts the model with
``from_torch`` on the first batch, hands graph, params and data to ``jq.ptq.quantize_graph``,
and wraps the quantized graph as a torch module (``to_torch``) that holds nothing of the float
model: it pickles, and serves every batch size the graph accepts.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

import jq.core
import jq.ptq

from ._convert import from_torch, is_module
from ._inputs import check_inputs
from ._to_torch import JQModule, to_torch

_FN = "pytorch_post_training_quantization"


def _numpy(x: Any) -> Any:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def numpy_batches(representative_data_gen: Callable[[], Any]) -> Callable[[], Iterator]:
    """``representative_data_gen`` with every torch tensor of a batch as a NumPy array."""

    def gen() -> Iterator:
        for batch in representative_data_gen():
            if isinstance(batch, (list, tuple)):
                yield [_numpy(x) for x in batch]
            else:
                yield _numpy(batch)

    return gen


def pytorch_post_training_quantization(
    model: Any,
    representative_data_gen: Callable[[], Any],
    target_resource_utilization: Any = None,
    core_config: jq.core.CoreConfig = jq.core.CoreConfig(),  # noqa: B008  (frozen, MCT's)
    target_platform_capabilities: Any = None,
    *,
    mesh: Any = None,
) -> tuple[JQModule, jq.core.QuantizationInfo]:
    """Quantize a PyTorch model after training, with MCT's call and defaults (documented at
    :func:`jq.ptq.pytorch_post_training_quantization`)."""
    if not is_module(model):
        raise TypeError(f"{_FN}: model must be a torch.nn.Module, got {type(model).__name__}")
    if target_resource_utilization is not None:
        raise NotImplementedError(
            f"{_FN}: target_resource_utilization (mixed precision) is not supported by jq"
        )
    if not isinstance(core_config, jq.core.CoreConfig):
        raise TypeError(
            f"{_FN}: core_config must be a jq.core.CoreConfig, got "
            f"{type(core_config).__module__}.{type(core_config).__name__}"
        )
    platform = jq.ptq.resolve_target_platform(target_platform_capabilities, _FN)
    if not callable(representative_data_gen):
        raise TypeError(
            f"{_FN}: representative_data_gen must be a callable returning an iterable of "
            f"batches, got {type(representative_data_gen).__name__}"
        )
    data = jq.ptq.open_calibration_data(numpy_batches(representative_data_gen), _FN)
    if any(m.training for m in model.modules()):
        model = copy.deepcopy(model).eval()
    check_inputs(model, data.first, _FN)  # count, rank, layout: named before torch.export runs
    # One graph for every batch size (a dynamic batch axis, or an error naming the node that
    # pins it): the module keeps no reference to the float model.
    t0 = time.perf_counter()
    graph, params = from_torch(model, data.first)
    t1 = time.perf_counter()
    res = jq.ptq.quantize_graph(
        graph, params, data, core_config=core_config, target_platform=platform, mesh=mesh, fn=_FN
    )
    t2 = time.perf_counter()
    module = to_torch(res.graph, res.params, res.info.layers)
    return module, _with_front_end_times(res.info, t1 - t0, time.perf_counter() - t2)


def _with_front_end_times(
    info: jq.core.QuantizationInfo, export: float, wrap: float
) -> jq.core.QuantizationInfo:
    """``info`` whose timings also hold ``export`` (torch.export and conversion to jq's graph)
    and ``to_torch`` (wrapping the result), and whose ``total`` is the whole call's."""
    timings = {"export": export, **info.timings, "to_torch": wrap}
    timings["pipeline"] = info.timings.get("total", 0.0)
    timings["total"] = export + timings["pipeline"] + wrap
    return dataclasses.replace(info, timings=timings)
