"""MCT-style PTQ entry points: ``jq.ptq`` mirrors ``mct.ptq``.

``pytorch_post_training_quantization`` takes MCT's arguments and returns ``(quantized
torch.nn.Module, jq.core.QuantizationInfo)``; ``flax_post_training_quantization`` does the same
for Flax models (NNX, or Linen with its variables). Both check MCT's arguments here (one front
door for every front end) and hand the call to their adapter, ``jq_torch`` or ``jq_flax``,
found by name only when called (``import jq`` never imports torch or flax, and no import in
``jq`` names an adapter). ``quantize_graph`` is the framework-neutral pipeline on jq graphs
that every front end calls: a front end opens the data (``open_calibration_data``), converts
the model into a graph and its params, and hands the three to ``quantize_graph``.

Examples (``quantize_graph`` has one on a jq graph):
    >>> import torch, jq.core, jq.ptq
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    >>> batches = [torch.randn(8, 4, generator=torch.Generator().manual_seed(i)) for i in (0, 1)]
    >>> quant_config = jq.core.QuantizationConfig(
    ...     activation_error_method=jq.core.QuantizationErrorMethod.NOCLIPPING)
    >>> core_config = jq.core.CoreConfig(quantization_config=quant_config, progress=False)
    >>> quantized_model, quantization_info = jq.ptq.pytorch_post_training_quantization(
    ...     model, lambda: ([b] for b in batches), core_config=core_config)
    >>> quantized_model(batches[0]).shape
    torch.Size([8, 3])
    >>> [(layer.name, layer.kind) for layer in quantization_info.layers]  # doctest: +ELLIPSIS
    [(..., 'weights'), (..., 'activation'), (..., 'activation')]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._src.ptq.config import CoreConfig
from ._src.ptq.config import resolve_target_platform as resolve_target_platform
from ._src.ptq.data import CalibrationData as CalibrationData
from ._src.ptq.data import open_calibration_data as open_calibration_data
from ._src.ptq.front_door import adapter, check_call
from ._src.ptq.pipeline import PTQResult as PTQResult
from ._src.ptq.pipeline import quantize_graph as quantize_graph
from ._src.ptq.pipeline import rebase_graph as rebase_graph
from ._src.report.quant_info import QuantizationInfo

__all__ = [
    "CalibrationData",
    "PTQResult",
    "flax_post_training_quantization",
    "open_calibration_data",
    "pytorch_post_training_quantization",
    "quantize_graph",
    "rebase_graph",
    "resolve_target_platform",
]

_TORCH = "pytorch_post_training_quantization"
_FLAX = "flax_post_training_quantization"


def pytorch_post_training_quantization(
    model: Any,
    representative_data_gen: Callable[[], Any],
    target_resource_utilization: Any = None,
    core_config: CoreConfig = CoreConfig(),  # noqa: B008  (frozen, MCT's signature)
    target_platform_capabilities: Any = None,
    *,
    mesh: Any = None,
) -> tuple[Any, QuantizationInfo]:
    """Quantize a PyTorch model after training, with MCT's call and defaults.

    The arguments are checked here (the front door every front end shares); the model is
    then converted and quantized by the ``jq_torch`` adapter, which imports torch only now
    (``jq_torch.pytorch_post_training_quantization`` is this function).

    Args:
      model: a ``torch.nn.Module`` (a copy is put in eval mode; the model is not changed).
      representative_data_gen: a callable returning an iterable of batches, each a list with
        one tensor (or array) per model input; batches may differ in batch size only.
      target_resource_utilization: must be None (jq has no mixed precision).
      core_config: :class:`jq.core.CoreConfig` (MCT's defaults when omitted); per-layer
        settings in MCT's form (``debug_config``'s network editor, ``bit_width_config``) or
        jq's (``overrides``), on the node names ``quantization_info.layers`` prints.
      target_platform_capabilities: None (MCT's default platform: 8-bit symmetric per-channel
        kernels, 8-bit power-of-two activations), a :class:`jq.core.TargetPlatform`, or an MCT
        ``TargetPlatformCapabilities``.
      mesh: jq only: the devices calibration splits each batch over (see
        :func:`quantize_graph`; default all devices when more than one is visible).

    Returns:
      ``(quantized_model, quantization_info)``: a ``torch.nn.Module`` computing the quantized
      graph (``jq_torch.JQModule``; fake-quantized kernels, a quantizer after every quantized
      activation), and a :class:`jq.core.QuantizationInfo`. The module is self-contained (no
      reference to the float model; ``torch.save`` works) and one graph serves every batch
      size, unless the model pins it (then the error names the node that does).

    Raises:
      ImportError: the ``jq_torch`` adapter (or torch) is not importable.
      TypeError / ValueError: bad arguments or data (empty generator, wrong shapes or
        dtypes, NaN/inf), naming the problem.
      jq_torch.UnsupportedOpError: layers without a converter (all listed).
      NotImplementedError: a resource target (mixed precision).
    """
    call = check_call(
        _TORCH,
        representative_data_gen,
        target_resource_utilization,
        core_config,
        target_platform_capabilities,
    )
    return adapter("pytorch", "_ptq", _TORCH).quantize(model, call, mesh=mesh)


def flax_post_training_quantization(
    model: Any,
    representative_data_gen: Callable[[], Any],
    target_resource_utilization: Any = None,
    core_config: CoreConfig = CoreConfig(),  # noqa: B008  (frozen, MCT's signature)
    target_platform_capabilities: Any = None,
    *,
    variables: Any = None,
    apply_kwargs: Any = None,
    mesh: Any = None,
) -> tuple[Any, QuantizationInfo]:
    """Quantize a Flax model (NNX, or Linen with ``variables``) after training, with MCT's call
    and defaults.

    The arguments are checked here, then the ``jq_flax`` adapter (imported only now, with
    flax; ``jq_flax.flax_post_training_quantization`` is this function) runs it. The model
    is traced with ``jq.from_jax`` on the first batch (NNX in inference mode: dropout
    off, batch norm on running statistics); kernels keep their Flax layout in the model and
    are quantized per output channel.

    Args:
      model: an ``nnx.Module`` (not changed), or a ``linen.Module``.
      representative_data_gen: a callable returning an iterable of batches, each a list with
        one array per model input (the model's own layout, e.g. NHWC).
      target_resource_utilization: must be None (jq has no mixed precision).
      core_config: :class:`jq.core.CoreConfig` (MCT's defaults when omitted).
      target_platform_capabilities: as for :func:`pytorch_post_training_quantization`.
      variables: a Linen module's variables (``{"params": ..., "batch_stats": ...}``).
      apply_kwargs: keyword arguments for a Linen ``module.apply`` (``{"train": False}``).
      mesh: jq only: the devices calibration splits each batch over (see
        :func:`quantize_graph`).

    Returns:
      ``(quantized_model, quantization_info)``: for NNX a ``jq_flax.QuantizedModule`` (an
      ``nnx.Module`` whose ``__call__`` runs the quantized graph: fake-quantized kernels, a
      quantizer after every quantized activation); for Linen a ``jq_flax.LinenQuantized``
      (``.apply(variables, *x)`` and ``.variables``); and a :class:`jq.core.QuantizationInfo`.

    Raises:
      ImportError: flax or the ``jq_flax`` adapter is not importable.
      TypeError / ValueError: bad arguments or data, naming the problem.
      jq.UnsupportedPrimitiveError: primitives without a conversion (all listed).
      NotImplementedError: a resource target (mixed precision).
    """
    call = check_call(
        _FLAX,
        representative_data_gen,
        target_resource_utilization,
        core_config,
        target_platform_capabilities,
    )
    front_end = adapter("flax", "_ptq", _FLAX)
    return front_end.quantize(
        model, call, variables=variables, apply_kwargs=apply_kwargs, mesh=mesh
    )


def __dir__() -> list[str]:
    """The public names only (not the typing helpers this module imports)."""
    return sorted(__all__)
