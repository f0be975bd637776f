"""The torch front end of the PTQ pipeline: MCT's ``pytorch_post_training_quantization``.

``jq.ptq.pytorch_post_training_quantization`` checks MCT's arguments (the front door every
front end shares) and calls :func:`quantize`: it opens the representative data (tensors become
NumPy arrays here), converts the model with ``from_torch`` on the first batch, hands graph,
params and data to ``jq.ptq.quantize_graph``, and wraps the quantized graph as a torch module
(``to_torch``) that holds nothing of the float model: it pickles, and serves every batch size
the graph accepts.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import jq.core
import jq.ptq
from jq._src.ptq.front_door import MctCall

from ._convert import from_torch, is_module
from ._inputs import check_inputs
from ._numpy import numpy_batches
from ._to_torch import JQModule, to_torch


def quantize(
    model: Any, call: MctCall, *, mesh: Any = None
) -> tuple[JQModule, jq.core.QuantizationInfo]:
    """PTQ of a torch ``model`` for a checked MCT call (documented at
    :func:`jq.ptq.pytorch_post_training_quantization`)."""
    fn = call.fn
    if not is_module(model):
        raise TypeError(f"{fn}: model must be a torch.nn.Module, got {type(model).__name__}")
    data = jq.ptq.open_calibration_data(numpy_batches(call.representative_data_gen), fn)
    if any(m.training for m in model.modules()):
        model = copy.deepcopy(model).eval()
    check_inputs(model, data.first, fn)  # count, rank, layout: named before torch.export runs
    # One graph for every batch size (a dynamic batch axis, or an error naming the node that
    # pins it): the module keeps no reference to the float model.
    t0 = time.perf_counter()
    graph, params = from_torch(model, data.first)
    t1 = time.perf_counter()
    res = jq.ptq.quantize_graph(
        graph,
        params,
        data,
        core_config=call.core_config,
        target_platform=call.platform,
        mesh=mesh,
        fn=fn,
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
