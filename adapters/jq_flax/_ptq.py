"""The Flax front end of the PTQ pipeline: ``flax_post_training_quantization``.

``jq.ptq.flax_post_training_quantization`` checks MCT's arguments (the front door every front
end shares) and calls :func:`quantize`: it opens the representative data, checks the first
batch against the model's inputs, converts the model with ``jq.from_jax`` on the first batch
(and again for other input shapes), hands graph, params and data to ``jq.ptq.quantize_graph``,
and returns the quantized graph as an NNX module or a Linen-style apply with variables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flax import linen, nnx

import jq
import jq.core
import jq.ptq
from jq._src.ptq.front_door import MctCall

from ._convert import Source, linen_source, nnx_source
from ._inputs import check_inputs
from ._module import LinenQuantized, QuantizedModule, linen_quantized


def quantize_source(
    src: Source,
    call: MctCall,
    mesh: Any = None,
    *,
    check: Callable[[tuple[np.ndarray, ...]], None] | None = None,
) -> jq.ptq.PTQResult:
    """PTQ of ``src.fn(src.params, *inputs)`` on the representative data of ``call`` (each
    batch split over ``mesh``, see :func:`jq.ptq.quantize_graph`), the first batch checked by
    ``check`` (its count, rank and layout against the model's) before tracing."""
    fn = call.fn
    data = jq.ptq.open_calibration_data(call.representative_data_gen, fn)
    if check is not None:
        check(data.first)
    graph, params = jq.from_jax(src.fn, src.params, *data.first, name=fn)

    def graph_for(shapes):
        example = tuple(np.zeros(s, a.dtype) for s, a in zip(shapes, data.first, strict=True))
        return jq.from_jax(src.fn, src.params, *example, name=fn)[0]

    return jq.ptq.quantize_graph(
        graph,
        params,
        data,
        core_config=call.core_config,
        target_platform=call.platform,
        graph_for=graph_for,
        mesh=mesh,
        fn=fn,
    )


def quantize(
    model: Any,
    call: MctCall,
    *,
    variables: Mapping | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    mesh: Any = None,
) -> tuple[QuantizedModule | LinenQuantized, jq.core.QuantizationInfo]:
    """PTQ of a Flax ``model`` for a checked MCT call (documented at
    :func:`jq.ptq.flax_post_training_quantization`)."""
    fn = call.fn
    if isinstance(model, nnx.Module):
        if variables is not None:
            raise TypeError(f"{fn}: variables are for Linen modules; an NNX model holds its own")
        check = functools.partial(check_inputs, model, fn=fn)
        res = quantize_source(nnx_source(model, fn), call, mesh, check=check)
        return QuantizedModule(res.graph, res.params, res.graph_for), res.info
    if isinstance(model, linen.Module):
        if variables is None:
            raise TypeError(f"{fn}: a Linen module needs its variables (variables=...)")
        kwargs = dict(apply_kwargs or {})
        src = linen_source(model, variables, kwargs, fn)
        check = functools.partial(
            check_inputs, model, fn=fn, variables=variables, apply_kwargs=kwargs
        )
        res = quantize_source(src, call, mesh, check=check)
        return linen_quantized(res.graph, res.params, res.graph_for), res.info
    raise TypeError(
        f"{fn}: model must be a flax.nnx.Module or a flax.linen.Module (with variables=...), "
        f"got {type(model).__name__}"
    )
