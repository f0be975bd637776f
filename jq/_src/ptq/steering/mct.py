"""MCT's steering objects read as jq rules: ``BitWidthConfig``'s manual bit widths,
``DebugConfig.network_editor``'s ``EditRule`` filters and actions, and the table of framework
layer types a ``NodeTypeFilter`` names (``_TYPE_OPS``).

MCT's objects are read by class and attribute names: this module imports neither MCT nor
torch.
"""

from __future__ import annotations

from typing import Any

from .overrides import node_override
from .rules import Rule, Selector, describe

_KERNEL_ATTRS = ("weight", "kernel")  # MCT's kernel attribute: torch "weight", keras "kernel"


def bit_width_rules(bwc: Any) -> tuple[Rule, ...]:
    """Rules of MCT's ``BitWidthConfig`` (its two lists of manual selections)."""
    if bwc is None:
        return ()
    if type(bwc).__name__ != "BitWidthConfig":
        raise TypeError(
            "CoreConfig: bit_width_config must be MCT's BitWidthConfig or None, got "
            f"{type(bwc).__name__}"
        )
    rules = []
    lists = (
        ("manual_activation_bit_width_selection_list", "activation_n_bits"),
        ("manual_weights_bit_width_selection_list", "weights_n_bits"),
    )
    for attr, field in lists:
        for i, sel in enumerate(getattr(bwc, attr, None) or ()):
            where = f"bit_width_config.{attr}[{i}]"
            if field == "weights_n_bits":
                _check_kernel_attr(getattr(sel, "attr", None), f"CoreConfig: {where}")
            selector = mct_selector(sel.filter, f"CoreConfig: {where}")
            o = node_override({field: sel.bit_width}, f"CoreConfig: {where}")
            rules.append(Rule(selector, o, f"{where} ({describe(selector)})"))
    return tuple(rules)


def editor_rules(dc: Any) -> tuple[Rule, ...]:
    """Rules of MCT's ``DebugConfig.network_editor`` (a list of ``EditRule``)."""
    if dc is None:
        return ()
    if type(dc).__name__ != "DebugConfig":
        raise TypeError(
            f"CoreConfig: debug_config must be MCT's DebugConfig or None, got {type(dc).__name__}"
        )
    for flag in ("analyze_similarity", "simulate_scheduler", "bypass"):
        if getattr(dc, flag, False):
            raise ValueError(
                f"CoreConfig: debug_config.{flag}=True is not supported by jq (only the "
                "network_editor of a DebugConfig is)"
            )
    rules = []
    for i, er in enumerate(getattr(dc, "network_editor", None) or ()):
        where = f"debug_config.network_editor[{i}]"
        if not hasattr(er, "filter") or not hasattr(er, "action"):
            raise TypeError(f"CoreConfig: {where} must be an EditRule(filter, action), got {er!r}")
        selector = mct_selector(er.filter, f"CoreConfig: {where}")
        fields, final = _action_fields(er.action, f"CoreConfig: {where}")
        o = node_override(fields, f"CoreConfig: {where} ({type(er.action).__name__})")
        rules.append(Rule(selector, o, f"{where} ({describe(selector)})", final))
    return tuple(rules)


# MCT action -> the node-config attributes jq applies from its kwargs.
_ACTIVATION_ATTRS = ("activation_error_method", "activation_n_bits", "quant_mode")
_WEIGHTS_ATTRS = (
    "weights_error_method",
    "weights_n_bits",
    "weights_per_channel_threshold",
    "enable_weights_quantization",
)
_FINAL_ATTRS = ("activation_n_bits", "quant_mode", "weights_n_bits", "enable_weights_quantization")
_REFUSED_ACTIONS = {
    "ChangeQuantizationParamFunction": "custom parameter functions are MCT callables on MCT "
    "statistics; pick an error method with ChangeCandidates*QuantConfigAttr instead",
    "ChangeFinalActivationQuantizationMethod": "it swaps the quantizer after the parameters "
    "were chosen for another method; use ChangeCandidatesActivationQuantizationMethod",
    "ChangeFinalWeightsQuantizationMethod": "it swaps the quantizer after the parameters were "
    "chosen for another method; use ChangeCandidatesWeightsQuantizationMethod",
    "ReplaceLayer": "jq does not replace layers",
}


def _action_fields(action: Any, where: str) -> tuple[dict[str, Any], bool]:
    """The :class:`NodeOverride` fields of an MCT network-editor action, and whether it is a
    ``ChangeFinal*`` one."""
    name = type(action).__name__
    if name in _REFUSED_ACTIONS:
        raise ValueError(f"{where}: {name} is not supported by jq: {_REFUSED_ACTIONS[name]}")
    if name == "ChangeCandidatesActivationQuantizationMethod":
        return {"activation_quantization_method": action.activation_quantization_method}, False
    if name == "ChangeCandidatesWeightsQuantizationMethod":
        _check_kernel_attr(action.attr_name, f"{where} ({name})")
        return {"weights_quantization_method": action.weights_quantization_method}, False
    kinds = {
        "ChangeCandidatesActivationQuantConfigAttr": (_ACTIVATION_ATTRS, False),
        "ChangeFinalActivationQuantConfigAttr": (_ACTIVATION_ATTRS, True),
        "ChangeCandidatesWeightsQuantConfigAttr": (_WEIGHTS_ATTRS, False),
        "ChangeFinalWeightsQuantConfigAttr": (_WEIGHTS_ATTRS, True),
    }
    if name not in kinds:
        raise ValueError(
            f"{where}: unknown network-editor action {name}; jq applies "
            f"{', '.join(kinds)}, ChangeCandidatesActivationQuantizationMethod and "
            "ChangeCandidatesWeightsQuantizationMethod"
        )
    accepted, final = kinds[name]
    if final:
        accepted = tuple(a for a in accepted if a in _FINAL_ATTRS)
    if "Weights" in name:
        _check_kernel_attr(getattr(action, "attr_name", None), f"{where} ({name})")
    kwargs = dict(getattr(action, "kwargs", None) or {})
    for k in kwargs:
        if k not in accepted:
            why = (
                "it is read when the parameters are searched, which a ChangeFinal action "
                "comes after (MCT changes nothing)"
                if final and k in _ACTIVATION_ATTRS + _WEIGHTS_ATTRS
                else "jq has no per-node setting for it"
            )
            raise ValueError(
                f"{where}: {name}({k}=...) is not supported: {why}; accepted: {', '.join(accepted)}"
            )
    if not kwargs:
        raise ValueError(f"{where}: {name} sets nothing (no keyword arguments)")
    if "quant_mode" in kwargs:
        kwargs["enable_activation_quantization"] = _quant_mode(kwargs.pop("quant_mode"), where)
    return kwargs, final


def _quant_mode(mode: Any, where: str) -> bool:
    """MCT's ``ActivationQuantizationMode``: ``QUANT`` -> True, ``NO_QUANT`` -> False."""
    name = getattr(mode, "name", mode)
    if name == "QUANT":
        return True
    if name == "NO_QUANT":
        return False
    raise ValueError(
        f"{where}: quant_mode={mode!r} is not supported (QUANT or NO_QUANT; jq places "
        "quantization-preserving nodes itself)"
    )


def _check_kernel_attr(attr: Any, where: str) -> None:
    """MCT names the weight attribute an action or bit width applies to: jq quantizes the
    kernel only (``"weight"`` in torch, ``"kernel"`` in Keras)."""
    if attr in _KERNEL_ATTRS:
        return
    if attr is None:
        raise ValueError(
            f"{where}: attr_name=None: MCT sets the field on the node's weights config, which "
            "has no such field (MCT warns and changes nothing); pass attr_name='weight' for "
            "the kernel"
        )
    raise ValueError(
        f"{where}: attribute {attr!r} is not quantized by jq (only the kernel: "
        f"{' or '.join(map(repr, _KERNEL_ATTRS))})"
    )


# NodeTypeFilter: torch / Keras / Flax layer and function names -> jq ops. jq graphs do not
# keep the framework type, so a type matches by op: NodeTypeFilter(torch.nn.ReLU) selects
# functional relus too (MCT: only nn.ReLU modules).
_TYPE_OPS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("Conv1d", "Conv2d", "Conv3d", "conv1d", "conv2d", "conv3d"), ("conv",)),
    **dict.fromkeys(("Conv", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D"), ("conv",)),
    **dict.fromkeys(
        ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "ConvTranspose"),
        ("conv_transpose",),
    ),
    **dict.fromkeys(
        ("conv_transpose1d", "conv_transpose2d", "Conv2DTranspose"), ("conv_transpose",)
    ),
    **dict.fromkeys(("Linear", "linear", "Dense"), ("linear",)),
    **dict.fromkeys(("ReLU", "relu", "relu_"), ("relu",)),
    **dict.fromkeys(("ReLU6", "relu6"), ("relu6",)),
    **dict.fromkeys(("LeakyReLU", "leaky_relu"), ("leaky_relu",)),
    **dict.fromkeys(("Hardtanh", "hardtanh"), ("hardtanh",)),
    **dict.fromkeys(("SiLU", "silu", "swish"), ("silu",)),
    **dict.fromkeys(("Hardswish", "hardswish"), ("hardswish",)),
    **dict.fromkeys(("Hardsigmoid", "hardsigmoid"), ("hardsigmoid",)),
    **dict.fromkeys(("GELU", "gelu"), ("gelu",)),
    **dict.fromkeys(("Sigmoid", "sigmoid"), ("sigmoid",)),
    **dict.fromkeys(("Tanh", "tanh"), ("tanh",)),
    **dict.fromkeys(("Softmax", "softmax"), ("softmax",)),
    **dict.fromkeys(("MaxPool1d", "MaxPool2d", "MaxPool3d", "max_pool2d"), ("max_pool",)),
    **dict.fromkeys(("AvgPool1d", "AvgPool2d", "AvgPool3d", "avg_pool2d"), ("avg_pool",)),
    **dict.fromkeys(
        ("AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "adaptive_avg_pool2d"), ("adaptive_avg_pool",)
    ),
    **dict.fromkeys(("add", "iadd", "Add"), ("add",)),
    **dict.fromkeys(("sub", "isub", "subtract"), ("sub",)),
    **dict.fromkeys(("mul", "imul", "multiply", "Multiply"), ("mul",)),
    **dict.fromkeys(("truediv", "div", "divide"), ("div",)),
    **dict.fromkeys(("cat", "concat", "concatenate", "Concatenate"), ("cat",)),
    **dict.fromkeys(("matmul", "bmm"), ("matmul",)),
    **dict.fromkeys(("LayerNorm", "layer_norm"), ("layer_norm",)),
    **dict.fromkeys(("GroupNorm", "group_norm"), ("group_norm",)),
    **dict.fromkeys(("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "BatchNorm"), ("batch_norm",)),
    **dict.fromkeys(("Embedding", "embedding", "Embed"), ("embedding",)),
    **dict.fromkeys(("Flatten", "flatten", "reshape", "view", "Reshape"), ("reshape",)),
    "mean": ("mean",),
}


def _type_ops(node_type: Any, where: str) -> tuple[str, tuple[str, ...]]:
    """``(name, jq ops)`` of a ``NodeTypeFilter``'s type (a class, a function, or a jq op
    name)."""
    from ...graph.ops import registered_ops

    if isinstance(node_type, str):
        if node_type in registered_ops():
            return node_type, (node_type,)
        name = node_type
    else:
        name = getattr(node_type, "__name__", type(node_type).__name__)
    if name in _TYPE_OPS:
        return name, _TYPE_OPS[name]
    raise ValueError(
        f"{where}: NodeTypeFilter({name}): jq does not know which of its ops that type becomes; "
        f"known types: {', '.join(sorted(_TYPE_OPS, key=str.lower))}; or pass a jq op name "
        "(e.g. 'conv')"
    )


def mct_selector(f: Any, where: str) -> Selector:
    """The :class:`Selector` of an MCT node filter (read by class and attribute names).

    Raises:
      ValueError: a filter jq does not know.
    """
    name = type(f).__name__
    if name == "NodeNameFilter":
        return Selector("name", str(f.node_name))
    if name == "NodeNameScopeFilter":
        return Selector("scope", str(f.node_name_scope))
    if name == "NodeTypeFilter":
        label, ops = _type_ops(f.node_type, where)
        return Selector("ops", label, frozenset(ops))
    if name in ("NodeAndMatcher", "NodeOrMatcher"):
        parts = (mct_selector(f.matcher_a, where), mct_selector(f.matcher_b, where))
        return Selector("and" if name == "NodeAndMatcher" else "or", parts=parts)
    if name == "NodeNotMatcher":
        return Selector("not", parts=(mct_selector(f.matcher_a, where),))
    if name == "NodeAnyMatcher":
        return Selector("any")
    raise ValueError(
        f"{where}: unknown node filter {name}; jq applies NodeNameFilter, NodeNameScopeFilter, "
        "NodeTypeFilter and their combinations (&, |, logic_not())"
    )
