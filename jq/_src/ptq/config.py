"""MCT-style PTQ configuration: ``QuantizationConfig``, ``CoreConfig``, ``TargetPlatform``.

Field names and defaults are MCT 2.6.1's (``mct.core.QuantizationConfig``,
``mct/core/common/quantization/quantization_config.py``), so code written for MCT runs with
``jq.core`` by changing the import. jq adds ``mct_compat`` (reproduce MCT's numbers, quirks
included, in float64).

Every field is checked on construction; a wrong type or value raises ``TypeError`` /
``ValueError`` naming the class and the field. Fields that configure MCT features jq does not
implement (second-moment correction, input scaling, softmax shift, channel equalization, ...)
accept only their default value, so a config never silently means something jq ignores.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from ..select.enums import (
    AutoErrorMethod,
    ErrorMethod,
    QuantizationMethod,
    parse_method,
)
from ..select.quantizers import MIN_THRESHOLD
from .layer_hessian import WeightsHessian, parse_weights_hessian
from .steering import Rule, bit_width, parse_error_method_or_auto, parse_rules

# Fields accepted only at their MCT default: jq does not implement the feature they switch.
_UNSUPPORTED = {
    "relu_bound_to_power_of_2": False,
    "weights_second_moment_correction": False,
    "input_scaling": False,
    "softmax_shift": False,
    "activation_channel_equalization": False,
    "shift_negative_threshold_recalculation": False,
    "shift_negative_params_search": False,
    "concat_threshold_update": False,
    "activation_bias_correction": False,
    "custom_tpc_opset_to_layer": None,
}


def _check_bool(obj: Any, field: str) -> None:
    v = getattr(obj, field)
    if not isinstance(v, bool):
        raise TypeError(
            f"{type(obj).__name__}: {field} must be a bool, got {type(v).__name__} {v!r}"
        )


def _check_number(obj: Any, field: str, *, low: float, low_open: bool, allow_inf: bool) -> float:
    v = getattr(obj, field)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(
            f"{type(obj).__name__}: {field} must be a number, got {type(v).__name__} {v!r}"
        )
    v = float(v)
    bad = math.isnan(v) or (math.isinf(v) and not allow_inf) or v < low or (low_open and v == low)
    if bad:
        rel = ">" if low_open else ">="
        inf = "" if allow_inf else ", finite"
        raise ValueError(f"{type(obj).__name__}: {field} must be {rel} {low}{inf}, got {v!r}")
    return v


def _check_bits(obj: Any, field: str) -> None:
    bit_width(getattr(obj, field), f"{type(obj).__name__}: {field}")


def _enum_field(obj: Any, field: str, parse: Callable[[Any, str], Any]) -> None:
    # The parser's messages start with the name it is given: "QuantizationConfig:
    # activation_error_method: unknown ...", the prefix once.
    member = parse(getattr(obj, field), f"{type(obj).__name__}: {field}")
    object.__setattr__(obj, field, member)


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantizationConfig:
    """How thresholds are chosen and which corrections run (MCT's ``QuantizationConfig``).

    Args:
      activation_error_method: error method of activation thresholds
        (:class:`QuantizationErrorMethod`, MCT's enum member, or a name such as ``"kl"``).
      weights_error_method: error method of kernel thresholds. ``HMSE`` works in plain PTQ
        (MCT requires GPTQ for it): scores come from JAX autodiff (``jq/_src/ptq/hessian.py``).
        Both error-method fields also accept ``"auto"`` (jq only): every candidate method's
        parameters are computed and, per layer, the one with the best layer-output SQNR on the
        calibration data is kept (``jq/_src/ptq/auto_eval.py``; one extra compiled pass over the
        data).
      relu_bound_to_power_of_2: not implemented; must be False.
      weights_bias_correction: correct each quantized kernel layer's bias for the mean shift
        of its output (MCT's ``compute_bias_correction_of_graph``).
      weights_second_moment_correction: not implemented; must be False.
      input_scaling: not implemented; must be False.
      softmax_shift: not implemented; must be False.
      activation_channel_equalization: not implemented; must be False.
      shift_negative_activation_correction: MCT's shift-negative correction (``snc.py``):
        a SiLU/Hardswish/GELU output with a small negative tail that feeds one conv/linear is
        shifted to non-negative, quantized unsigned, and the shift folded into the bias.
      z_threshold: z-score outlier filter of activation histograms (``inf`` = off), > 0.
      min_threshold: floor of every threshold, > 0.
      l_p_value: ``p`` of the LP error method, >= 1.
      linear_collapsing, residual_collapsing: MCT's graph rewrites after batch-norm folding,
        in both modes (``jq/_src/ptq/collapse.py``): a 2-D conv read only by a 1x1 conv
        becomes one conv (stride 1, no groups, no more kernel scalars), then ``conv(x) + x``
        becomes the conv with 1 on its kernel's centre taps; one kernel quantized, no
        quantizer between. ``False`` leaves those patterns as they are.
      shift_negative_ratio: SNC trigger ratio (> 0).
      shift_negative_threshold_recalculation: not implemented; must be False.
      shift_negative_params_search: not implemented; must be False.
      concat_threshold_update: not implemented; must be False.
      activation_bias_correction: not implemented; must be False.
      activation_bias_correction_threshold: >= 0 (unused while the feature is off).
      custom_tpc_opset_to_layer: must be None.
      weights_hessian: jq only: where HMSE's kernel scores come from (:class:`WeightsHessian`
        or its name). ``"model"`` (default, MCT's estimator): the whole model's
        ``diag(J^T J)`` by Hutchinson draws on 16 calibration samples (``hessian.py``).
        ``"layer"``: each linear/conv kernel's inputs' second moments ``diag(mean x x^T)``
        over all the calibration data, one forward pass (``layer_hessian.py``), exact for
        the layer's own output MSE when its input features are uncorrelated; other kernel
        ops are refused. Not with ``mct_compat``.
      mct_compat: jq only. ``True`` reproduces MCT 2.6.1's thresholds (float64, quirks
        included: collector merging, per-channel HMSE normalisation, POT-KL histograms);
        ``False`` (default) runs float32 with MCT's defects fixed.

    Raises:
      TypeError / ValueError: a field of the wrong type or value (the message names it).

    Examples:
      >>> import jq.core
      >>> qc = jq.core.QuantizationConfig(
      ...     activation_error_method=jq.core.QuantizationErrorMethod.NOCLIPPING)
      >>> qc.activation_error_method, qc.weights_error_method
      (<ErrorMethod.NOCLIPPING: 'noclipping'>, <ErrorMethod.MSE: 'mse'>)
      >>> jq.core.QuantizationConfig(weights_error_method="auto").weights_error_method
      <AutoErrorMethod.AUTO: 'auto'>
    """

    activation_error_method: ErrorMethod | AutoErrorMethod = ErrorMethod.MSE
    weights_error_method: ErrorMethod | AutoErrorMethod = ErrorMethod.MSE
    relu_bound_to_power_of_2: bool = False
    weights_bias_correction: bool = True
    weights_second_moment_correction: bool = False
    input_scaling: bool = False
    softmax_shift: bool = False
    shift_negative_activation_correction: bool = True
    activation_channel_equalization: bool = False
    z_threshold: float = math.inf
    min_threshold: float = MIN_THRESHOLD
    l_p_value: float = 2
    linear_collapsing: bool = True
    residual_collapsing: bool = True
    shift_negative_ratio: float = 0.05
    shift_negative_threshold_recalculation: bool = False
    shift_negative_params_search: bool = False
    concat_threshold_update: bool = False
    activation_bias_correction: bool = False
    activation_bias_correction_threshold: float = 0.0
    custom_tpc_opset_to_layer: Any = None
    weights_hessian: WeightsHessian = WeightsHessian.MODEL
    mct_compat: bool = False

    def __post_init__(self) -> None:
        _enum_field(self, "activation_error_method", parse_error_method_or_auto)
        _enum_field(self, "weights_error_method", parse_error_method_or_auto)
        _enum_field(self, "weights_hessian", parse_weights_hessian)
        for f in dataclasses.fields(self):
            if f.type in ("bool", bool):
                _check_bool(self, f.name)
        _check_number(self, "z_threshold", low=0.0, low_open=True, allow_inf=True)
        _check_number(self, "min_threshold", low=0.0, low_open=True, allow_inf=False)
        _check_number(self, "l_p_value", low=1.0, low_open=False, allow_inf=False)
        _check_number(self, "shift_negative_ratio", low=0.0, low_open=True, allow_inf=False)
        _check_number(
            self, "activation_bias_correction_threshold", low=0.0, low_open=False, allow_inf=False
        )
        if self.mct_compat and self.weights_hessian is not WeightsHessian.MODEL:
            raise ValueError(
                "QuantizationConfig: weights_hessian='layer' is jq only; mct_compat=True "
                "reproduces MCT's whole-model estimator (weights_hessian='model')"
            )
        for name, default in _UNSUPPORTED.items():
            if getattr(self, name) != default:
                raise ValueError(
                    f"QuantizationConfig: {name}={getattr(self, name)!r} is not supported by jq "
                    f"(only the MCT default {default!r})"
                )


@dataclasses.dataclass(frozen=True, kw_only=True)
class TargetPlatform:
    """jq's target platform: MCT's default TPC (imx500 v1) with settable bit widths/methods.

    Kernels of ``conv``, ``conv_transpose`` and ``linear`` get ``weights_*``; every other
    float value gets an activation quantizer (``activation_*``, signedness from the data),
    except the no-quantization ops and the inner ops of fusing patterns (MCT's default
    imx500 v1 target platform).

    Args:
      weights_n_bits: kernel bit width (1..16), default 8.
      weights_quantization_method: default SYMMETRIC.
      weights_per_channel_threshold: per output channel (default) or per tensor.
      activation_n_bits: activation bit width (1..16), default 8.
      activation_quantization_method: default POWER_OF_TWO.
      quantize_inputs: put a quantizer on the graph inputs (MCT does).
      weights_group_size: jq only: per-group parameters for ``linear`` kernels, one per
        ``weights_group_size`` consecutive inputs of each output channel (thresholds or
        ranges ``(out, in / group)``; LLM recipes' ``group_size``, 32..128); ``None`` (default):
        per channel. Conv kernels stay per channel (their ``in x kh x kw`` rarely divides a
        group size; LLM recipes group Linear layers only). Needs per-channel weights, divides
        every linear layer's input size (an error names the layer otherwise), no KL, not with
        ``mct_compat`` (MCT has no per-group mode). ONNX ``INT8`` and ``MCTQ`` cannot write
        it (the export names the layers); ``FAKELY_QUANT`` can.
      quantize_activations: jq only: ``False`` quantizes kernels only, activations left
        float (weights-only PTQ: W4A16 is ``TargetPlatform(weights_n_bits=4,
        weights_group_size=128, quantize_activations=False)``, W8A16 likewise). Calibration
        data is then optional: ``jq.ptq.quantize_graph(graph, params, None, ...)`` searches
        the kernels alone (every error method but HMSE, which needs data; no bias
        correction, which needs the layers' input means).

    Raises:
      TypeError / ValueError: a field of the wrong type or value.

    Examples:
      >>> import jq.core
      >>> w4a16 = jq.core.TargetPlatform(
      ...     weights_n_bits=4, weights_group_size=128, quantize_activations=False)
      >>> w4a16.weights_group_size, w4a16.quantize_activations
      (128, False)
    """

    weights_n_bits: int = 8
    weights_quantization_method: QuantizationMethod = QuantizationMethod.SYMMETRIC
    weights_per_channel_threshold: bool = True
    activation_n_bits: int = 8
    activation_quantization_method: QuantizationMethod = QuantizationMethod.POWER_OF_TWO
    quantize_inputs: bool = True
    weights_group_size: int | None = None
    quantize_activations: bool = True

    def __post_init__(self) -> None:
        _check_bits(self, "weights_n_bits")
        _check_bits(self, "activation_n_bits")
        _enum_field(self, "weights_quantization_method", parse_method)
        _enum_field(self, "activation_quantization_method", parse_method)
        _check_bool(self, "weights_per_channel_threshold")
        _check_bool(self, "quantize_inputs")
        _check_bool(self, "quantize_activations")
        g = self.weights_group_size
        if g is not None:
            if isinstance(g, bool) or not isinstance(g, int):
                raise TypeError(
                    f"TargetPlatform: weights_group_size must be an int or None, got {g!r}"
                )
            if g < 1:
                raise ValueError(f"TargetPlatform: weights_group_size must be >= 1, got {g}")
            if not self.weights_per_channel_threshold:
                raise ValueError(
                    "TargetPlatform: weights_group_size needs weights_per_channel_threshold=True "
                    "(groups split each output channel)"
                )


@dataclasses.dataclass(frozen=True, kw_only=True)
class CoreConfig:
    """MCT's ``CoreConfig``: the :class:`QuantizationConfig` and per-layer steering.

    Per-layer settings (README: "Steering single layers"; ``jq/_src/ptq/steering/``) come
    in MCT's form, ``bit_width_config`` and ``debug_config``, or in jq's, ``overrides``. They
    apply in that order, a later rule winning field by field; every rule is checked here, and
    against the model's node names when the model is quantized (a rule that matches no node
    is an error naming the closest names).

    Args:
      quantization_config: the :class:`QuantizationConfig` (default: MCT's defaults).
      mixed_precision_config: must be None (jq has no mixed precision; MCT's "unset" default
        object is accepted too).
      bit_width_config: MCT's ``BitWidthConfig`` with manual activation / kernel bit widths
        (``set_manual_activation_bit_width(filters, bit_widths)``,
        ``set_manual_weights_bit_width(filters, bit_widths, "weight")``); any width in 1..16
        (MCT allows only the platform's candidate widths).
      debug_config: MCT's ``DebugConfig`` whose ``network_editor`` lists
        ``EditRule(filter=..., action=...)``: filters ``NodeNameFilter``,
        ``NodeNameScopeFilter``, ``NodeTypeFilter`` (torch / Keras / Flax layer types, matched
        by the jq op they become) and their ``&``, ``|``, ``logic_not()``; actions
        ``ChangeCandidatesActivationQuantConfigAttr`` / ``ChangeFinalActivationQuantConfigAttr``
        (``activation_error_method``, ``activation_n_bits``, ``quant_mode``),
        ``ChangeCandidatesWeightsQuantConfigAttr`` / ``ChangeFinalWeightsQuantConfigAttr``
        (``attr_name="weight"``; ``weights_error_method``, ``weights_n_bits``,
        ``weights_per_channel_threshold``, ``enable_weights_quantization``),
        ``ChangeCandidatesActivationQuantizationMethod`` and
        ``ChangeCandidatesWeightsQuantizationMethod``. Others are refused, naming why.
      overrides: jq only: ``{pattern: {field: value}}``; ``pattern`` is a node name as
        ``QuantizationInfo.layers`` and the report print it, or a glob (``"layer2.*"``);
        fields (a mapping, or a :class:`jq.core.NodeOverride`) are ``NodeOverride``'s
        (``weights_error_method``,
        ``weights_n_bits``, ``weights_quantization_method``, ``weights_per_channel_threshold``,
        ``enable_weights_quantization``, ``activation_error_method``, ``activation_n_bits``,
        ``activation_quantization_method``, ``enable_activation_quantization``).
      progress: jq only: show tqdm progress bars (statistics, Hessians).

    Attributes:
      rules: the parsed steering rules, in the order they apply (read only).

    Raises:
      TypeError / ValueError: a field of the wrong type or value, an unknown override field,
        an MCT filter or action jq does not apply.

    Examples:
      >>> import jq.core
      >>> cfg = jq.core.CoreConfig(overrides={"fc": {"weights_n_bits": 4}})
      >>> [(r.source, r.override.weights_n_bits) for r in cfg.rules]
      [("overrides['fc']", 4)]
      >>> try:
      ...     jq.core.CoreConfig(overrides={"fc": {"weight_n_bits": 4}})
      ... except ValueError as e:
      ...     print(str(e)[:72])
      CoreConfig: overrides['fc']: unknown field 'weight_n_bits' (did you mean
    """

    quantization_config: QuantizationConfig = dataclasses.field(default_factory=QuantizationConfig)
    mixed_precision_config: Any = None
    bit_width_config: Any = None
    debug_config: Any = None
    overrides: Any = None
    progress: bool = True
    rules: tuple[Rule, ...] = dataclasses.field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        qc = self.quantization_config
        if not isinstance(qc, QuantizationConfig):
            raise TypeError(
                "CoreConfig: quantization_config must be a jq.core.QuantizationConfig, got "
                f"{type(qc).__module__}.{type(qc).__name__}"
            )
        _check_bool(self, "progress")
        mp = self.mixed_precision_config
        if mp is not None and not _is_unset_mct_object(mp):
            raise ValueError(
                "CoreConfig: mixed_precision_config is not supported by jq (no mixed "
                f"precision); got {mp!r}"
            )
        rules = parse_rules(
            overrides=self.overrides,
            debug_config=_unless_unset(self.debug_config),
            bit_width_config=_unless_unset(self.bit_width_config),
            activation_error_method=qc.activation_error_method,
        )
        object.__setattr__(self, "rules", rules)


def _unless_unset(v: Any) -> Any:
    return None if v is None or _is_unset_mct_object(v) else v


def resolve_target_platform(tpc: Any, fn: str = "jq") -> TargetPlatform:
    """The :class:`TargetPlatform` of ``tpc``: ``None`` (MCT's default platform), a
    :class:`TargetPlatform`, or an MCT ``TargetPlatformCapabilities`` (its default activation
    config and its Conv kernel config are read).

    Raises:
      TypeError: ``tpc`` is none of these (``fn`` names the caller).
    """
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
        platform: dict[str, Any] = dict(
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
            f"{fn}: target_platform_capabilities must be None, a jq.core.TargetPlatform or an "
            f"MCT TargetPlatformCapabilities; could not read {type(tpc).__name__}: {e}"
        ) from None


def _is_unset_mct_object(v: Any) -> bool:
    """MCT's default ``MixedPrecisionQuantizationConfig()`` / ``BitWidthConfig()`` /
    ``DebugConfig()`` instances mean "off"; accept them so MCT-built configs pass through."""
    name = type(v).__name__
    if name == "MixedPrecisionQuantizationConfig":
        return not getattr(v, "is_mixed_precision_enabled", False)
    if name == "BitWidthConfig":
        return not getattr(v, "manual_activation_bit_width_selection_list", None) and not getattr(
            v, "manual_weights_bit_width_selection_list", None
        )
    if name == "DebugConfig":
        return not getattr(v, "network_editor", None) and not getattr(
            v, "analyze_similarity", False
        )
    return False
