"""MCT-style PTQ entry points: ``jq.ptq`` mirrors ``mct.ptq``.

``pytorch_post_training_quantization`` takes MCT's arguments and returns ``(quantized
torch.nn.Module, jq.core.QuantizationInfo)``. torch is imported only when it is called (through
the ``jq_torch`` adapter); ``import jq`` never imports torch. ``quantize_graph`` is the
framework-neutral pipeline on jq graphs.

Example::

    quant_config = jq.core.QuantizationConfig(
        activation_error_method=jq.core.QuantizationErrorMethod.NOCLIPPING)
    core_config = jq.core.CoreConfig(quantization_config=quant_config)
    quantized_model, quantization_info = jq.ptq.pytorch_post_training_quantization(
        model, representative_data_gen, core_config=core_config)
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from ._src.ptq.calibrate import check_batch
from ._src.ptq.config import CoreConfig, TargetPlatform
from ._src.ptq.fold import fold_batch_norm
from ._src.ptq.pipeline import PTQResult as PTQResult
from ._src.ptq.pipeline import quantize_graph as quantize_graph
from ._src.ptq.pipeline import rebase_graph
from ._src.select.enums import QuantizationMethod

__all__ = ["PTQResult", "pytorch_post_training_quantization", "quantize_graph"]

_FN = "pytorch_post_training_quantization"


def _platform(tpc: Any) -> TargetPlatform:
    """``None``, a :class:`jq.core.TargetPlatform`, or an MCT ``TargetPlatformCapabilities``
    (its default activation config and its Conv kernel config are read)."""
    if tpc is None:
        return TargetPlatform()
    if isinstance(tpc, TargetPlatform):
        return tpc
    try:
        base = tpc.default_qco.base_config
        kernel = None
        for op_set in getattr(tpc, "operator_set", None) or ():
            if str(getattr(op_set, "name", "")).lower() in ("conv", "conv2d"):
                kernel = op_set.qc_options.base_config.attr_weights_configs_mapping["kernel_attr"]
                break
        if kernel is None:
            kernel = base.attr_weights_configs_mapping.get("kernel_attr")
        a_method = base.activation_quantization_method.name
        platform = dict(
            activation_n_bits=int(base.activation_n_bits),
            activation_quantization_method=QuantizationMethod[a_method],
        )
        if kernel is not None:
            platform.update(
                weights_n_bits=int(kernel.weights_n_bits),
                weights_quantization_method=QuantizationMethod[
                    kernel.weights_quantization_method.name
                ],
                weights_per_channel_threshold=bool(kernel.weights_per_channel_threshold),
            )
        return TargetPlatform(**platform)
    except (AttributeError, KeyError, TypeError) as e:
        raise TypeError(
            f"{_FN}: target_platform_capabilities must be None, a jq.core.TargetPlatform or an "
            f"MCT TargetPlatformCapabilities; could not read {type(tpc).__name__}: {e}"
        ) from None


def pytorch_post_training_quantization(
    model: Any,
    representative_data_gen: Callable[[], Any],
    target_resource_utilization: Any = None,
    core_config: CoreConfig = CoreConfig(),  # noqa: B008  (frozen, MCT's signature)
    target_platform_capabilities: Any = None,
):
    """Quantize a PyTorch model after training, with MCT's call and defaults.

    Args:
      model: a ``torch.nn.Module`` (a copy is put in eval mode; the model is not changed).
      representative_data_gen: a callable returning an iterable of batches, each a list with
        one tensor (or array) per model input; batches may differ in batch size only.
      target_resource_utilization: must be None (jq has no mixed precision).
      core_config: :class:`jq.core.CoreConfig` (MCT's defaults when omitted).
      target_platform_capabilities: None (MCT's default platform: 8-bit symmetric per-channel
        kernels, 8-bit power-of-two activations), a :class:`jq.core.TargetPlatform`, or an MCT
        ``TargetPlatformCapabilities``.

    Returns:
      ``(quantized_model, quantization_info)``: a ``torch.nn.Module`` computing the quantized
      graph (``jq_torch.JQModule``; fake-quantized kernels, a quantizer after every quantized
      activation), and a :class:`jq.core.QuantizationInfo`. Inputs of other batch sizes work:
      the module converts the float model (kept by reference) once per new input shape.

    Raises:
      ImportError: the ``jq_torch`` adapter (or torch) is not importable.
      TypeError / ValueError: bad arguments or data (empty generator, wrong shapes or
        dtypes, NaN/inf), naming the problem.
      jq_torch.UnsupportedOpError: layers without a converter (all listed).
      NotImplementedError: a resource target (mixed precision).
    """
    try:
        import jq_torch  # torch lives there, never in jq
    except ImportError as e:
        raise ImportError(
            f"{_FN} needs torch and the jq_torch adapter (install jq-quant[torch], or put "
            f"adapters/ on sys.path): {e}"
        ) from e
    if not jq_torch.is_module(model):
        raise TypeError(f"{_FN}: model must be a torch.nn.Module, got {type(model).__name__}")
    if target_resource_utilization is not None:
        raise NotImplementedError(
            f"{_FN}: target_resource_utilization (mixed precision) is not supported by jq"
        )
    if not isinstance(core_config, CoreConfig):
        raise TypeError(
            f"{_FN}: core_config must be a jq.core.CoreConfig, got "
            f"{type(core_config).__module__}.{type(core_config).__name__}"
        )
    platform = _platform(target_platform_capabilities)
    if not callable(representative_data_gen):
        raise TypeError(
            f"{_FN}: representative_data_gen must be a callable returning an iterable of "
            f"batches, got {type(representative_data_gen).__name__}"
        )
    it = iter(representative_data_gen())
    try:
        first_batch = next(it)
    except StopIteration:
        raise ValueError(f"{_FN}: representative_data_gen yielded no batch") from None
    n_inputs = len(first_batch) if isinstance(first_batch, (list, tuple)) else 1
    first = check_batch(first_batch, 0, n_inputs, _FN)

    if any(m.training for m in model.modules()):
        model = copy.deepcopy(model).eval()

    def example(shapes):
        return tuple(np.zeros(s, a.dtype) for s, a in zip(shapes, first, strict=True))

    graph, params = jq_torch.from_torch(model, tuple(first))

    def graph_for(shapes):
        return jq_torch.from_torch(model, example(shapes))[0]

    started = []

    def data_gen():
        # The first pass continues the iterator already opened (its first batch was read to
        # convert the model); later passes (the AUTO error method's) start afresh.
        if started:
            return representative_data_gen()
        started.append(True)
        return itertools.chain([first], it)

    res = quantize_graph(
        graph,
        params,
        data_gen,
        core_config=core_config,
        target_platform=platform,
        graph_for=graph_for,
        fn=_FN,
    )
    compat = core_config.quantization_config.mct_compat

    def quantized_for(shapes):
        # Other input shapes: convert the float model again and carry its shape attributes
        # into the quantized graph (same nodes, same params).
        g = fold_batch_norm(graph_for(shapes), params, include_linear=not compat)[0]
        return rebase_graph(res.graph, res.float_graph, g)

    return jq_torch.to_torch(res.graph, res.params, quantized_for), res.info
