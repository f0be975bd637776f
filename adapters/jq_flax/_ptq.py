"""The Flax front end of the PTQ pipeline: ``flax_post_training_quantization``.

It opens the representative data, converts the model with ``jq.from_jax`` on the first batch
(and again for other input shapes), hands graph, params and data to ``jq.ptq.quantize_graph``,
and returns the quantized graph as an NNX module or a Linen-style apply with variables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flax import linen, nnx

import jq
import jq.core
import jq.ptq
from jq._src.ptq.data import check_input_count

from ._convert import Source, linen_source, nnx_source
from ._module import LinenQuantized, QuantizedModule, linen_quantized

_FN = "flax_post_training_quantization"


def _check(target_resource_utilization, core_config, representative_data_gen) -> None:
    if target_resource_utilization is not None:
        raise NotImplementedError(
            f"{_FN}: target_resource_utilization (mixed precision) is not supported by jq"
        )
    if not isinstance(core_config, jq.core.CoreConfig):
        raise TypeError(
            f"{_FN}: core_config must be a jq.core.CoreConfig, got {type(core_config).__name__}"
        )
    if not callable(representative_data_gen):
        raise TypeError(
            f"{_FN}: representative_data_gen must be a callable returning an iterable of "
            f"batches, got {type(representative_data_gen).__name__}"
        )


def quantize_source(
    src: Source,
    representative_data_gen: Callable[[], Any],
    core_config,
    platform,
    mesh=None,
    *,
    call: tuple[Callable, str, tuple[str, ...]] | None = None,
) -> jq.ptq.PTQResult:
    """PTQ of ``src.fn(src.params, *inputs)`` on the representative data (each batch split
    over ``mesh``, see :func:`jq.ptq.quantize_graph`). ``call``: the model's ``__call__``, its
    name and the parameters given by keyword, to check the first batch's number of arrays
    against before tracing."""
    data = jq.ptq.open_calibration_data(representative_data_gen, _FN)
    if call is not None:
        check_input_count(call[0], data.n_inputs, _FN, call[1], call[2])
    graph, params = jq.from_jax(src.fn, src.params, *data.first, name=_FN)

    def graph_for(shapes):
        example = tuple(np.zeros(s, a.dtype) for s, a in zip(shapes, data.first, strict=True))
        return jq.from_jax(src.fn, src.params, *example, name=_FN)[0]

    return jq.ptq.quantize_graph(
        graph,
        params,
        data,
        core_config=core_config,
        target_platform=platform,
        graph_for=graph_for,
        mesh=mesh,
        fn=_FN,
    )


def flax_post_training_quantization(
    model: Any,
    representative_data_gen: Callable[[], Any],
    target_resource_utilization: Any = None,
    core_config: jq.core.CoreConfig = jq.core.CoreConfig(),  # noqa: B008  (frozen, MCT's)
    target_platform_capabilities: Any = None,
    *,
    variables: Mapping | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    mesh: Any = None,
) -> tuple[QuantizedModule | LinenQuantized, jq.core.QuantizationInfo]:
    """Quantize a Flax model after training, with MCT's call and defaults (documented at
    :func:`jq.ptq.flax_post_training_quantization`)."""
    _check(target_resource_utilization, core_config, representative_data_gen)
    platform = jq.ptq.resolve_target_platform(target_platform_capabilities, _FN)
    if isinstance(model, nnx.Module):
        if variables is not None:
            raise TypeError(f"{_FN}: variables are for Linen modules; an NNX model holds its own")
        call: tuple[Callable, str, tuple[str, ...]] = (
            model.__call__,
            f"{type(model).__name__}.__call__",
            (),
        )
        res = quantize_source(
            nnx_source(model, _FN), representative_data_gen, core_config, platform, mesh, call=call
        )
        return QuantizedModule(res.graph, res.params, res.graph_for), res.info
    if isinstance(model, linen.Module):
        if variables is None:
            raise TypeError(f"{_FN}: a Linen module needs its variables (variables=...)")
        src = linen_source(model, variables, dict(apply_kwargs or {}), _FN)
        kwargs = tuple(dict(apply_kwargs or {}))
        call = (model.__call__, f"{type(model).__name__}.__call__", kwargs)
        res = quantize_source(src, representative_data_gen, core_config, platform, mesh, call=call)
        return linen_quantized(res.graph, res.params, res.graph_for), res.info
    raise TypeError(
        f"{_FN}: model must be a flax.nnx.Module or a flax.linen.Module (with variables=...), "
        f"got {type(model).__name__}"
    )
