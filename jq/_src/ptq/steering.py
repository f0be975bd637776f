"""Per-layer steering: settings for single nodes, in MCT's terms or in jq's.

Three sources, parsed (and checked) when the :class:`jq.core.CoreConfig` is made
(:func:`parse_rules`) and resolved against the graph once it is known (:func:`resolve`):

- MCT's manual bit widths: ``CoreConfig(bit_width_config=mct.core.BitWidthConfig())`` after
  ``set_manual_activation_bit_width(filters, bit_widths)`` /
  ``set_manual_weights_bit_width(filters, bit_widths, attrs)``;
- MCT's network editor: ``CoreConfig(debug_config=mct.core.DebugConfig(network_editor=[
  EditRule(filter=..., action=...)]))`` with MCT's node filters (``NodeNameFilter``,
  ``NodeNameScopeFilter``, ``NodeTypeFilter`` and their ``&``, ``|``, ``logic_not()``) and
  the actions that set error method, bit width, quantization method or per-channel thresholds,
  or switch quantization off;
- jq's mapping: ``CoreConfig(overrides={"layer1.0.conv1": {"weights_n_bits": 4},
  "layer2.*": {"activation_error_method": "kl"}})``: glob patterns (``fnmatch``, case
  sensitive) over the node names exactly as ``QuantizationInfo.layers`` and the report print
  them (the layer for a kernel, the value for an activation quantizer), mapped to
  :class:`NodeOverride` fields.

They apply in that order (MCT applies its bit widths when it builds each node's candidates and
the editor afterwards); a later rule wins field by field. A rule that matches no node, or only
nodes without the quantizer its fields set (a conv fused with its ReLU has no activation
quantizer of its own), is an error naming the closest names. MCT's objects are read by class
and attribute names: this module imports neither MCT nor torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from ..graph.graph import Graph
from ..select.enums import (
    AutoErrorMethod,
    ErrorMethod,
    QuantizationMethod,
    is_auto,
    parse_error_method,
    parse_method,
)
from .placement import NORM_INPUT_BITS, Plan, norm_inputs

_WEIGHTS = "weights"
_ACTIVATION = "activation"
_KERNEL_ATTRS = ("weight", "kernel")  # MCT's kernel attribute: torch "weight", keras "kernel"


def parse_error_method_or_auto(value: Any, where: str) -> ErrorMethod | AutoErrorMethod:
    """An error method (see ``parse_error_method``) or ``AutoErrorMethod.AUTO`` for
    ``"auto"``; ``where`` names the field in the error."""
    if is_auto(value):
        return AutoErrorMethod.AUTO
    try:
        return parse_error_method(value, where)
    except ValueError as e:
        raise ValueError(f"{e}, or 'auto' (choose per layer)") from None


def _bits(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: must be an int bit width, got {value!r}")
    if not 1 <= value <= 16:
        raise ValueError(f"{where}: must be in 1..16, got {value}")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: must be a bool, got {type(value).__name__} {value!r}")
    return value


def _qmethod(value: Any, where: str) -> QuantizationMethod:
    return parse_method(value, where)


# field -> (kind, parser)
_FIELDS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "weights_error_method": (_WEIGHTS, parse_error_method_or_auto),
    "weights_n_bits": (_WEIGHTS, _bits),
    "weights_quantization_method": (_WEIGHTS, _qmethod),
    "weights_per_channel_threshold": (_WEIGHTS, _flag),
    "enable_weights_quantization": (_WEIGHTS, _flag),
    "activation_error_method": (_ACTIVATION, parse_error_method_or_auto),
    "activation_n_bits": (_ACTIVATION, _bits),
    "activation_quantization_method": (_ACTIVATION, _qmethod),
    "enable_activation_quantization": (_ACTIVATION, _flag),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeOverride:
    """Settings of one node that replace the global ones; ``None`` keeps the global value.

    Field names are MCT's node-config attribute names (``jq.core.QuantizationConfig`` and
    ``jq.core.TargetPlatform`` hold the global values).

    Args:
      weights_error_method: the kernel's error method (an ``ErrorMethod``, MCT's member, a
        name, or ``"auto"``).
      weights_n_bits: the kernel's bit width (1..16).
      weights_quantization_method: ``POWER_OF_TWO``, ``SYMMETRIC`` or ``UNIFORM``.
      weights_per_channel_threshold: per output channel (True) or per tensor (False).
      enable_weights_quantization: False keeps the kernel in float.
      activation_error_method: the value's error method (``HMSE`` only when it is the global
        one: it weights every value's statistics).
      activation_n_bits, activation_quantization_method: the value's quantizer.
      enable_activation_quantization: False leaves the value without a quantizer.

    Raises:
      TypeError / ValueError: a value of the wrong type (the message names the field).

    Examples:
      >>> NodeOverride(weights_n_bits=4, activation_error_method="kl").set_fields()
      {'weights_n_bits': 4, 'activation_error_method': <ErrorMethod.KL: 'kl'>}
    """

    weights_error_method: ErrorMethod | AutoErrorMethod | None = None
    weights_n_bits: int | None = None
    weights_quantization_method: QuantizationMethod | None = None
    weights_per_channel_threshold: bool | None = None
    enable_weights_quantization: bool | None = None
    activation_error_method: ErrorMethod | AutoErrorMethod | None = None
    activation_n_bits: int | None = None
    activation_quantization_method: QuantizationMethod | None = None
    enable_activation_quantization: bool | None = None

    def __post_init__(self) -> None:
        for name, (_, parse) in _FIELDS.items():
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, parse(v, f"NodeOverride: {name}"))

    def set_fields(self) -> dict[str, Any]:
        """The fields that are set (not ``None``), in declaration order."""
        return {k: getattr(self, k) for k in _FIELDS if getattr(self, k) is not None}

    def kinds(self) -> frozenset[str]:
        """Which quantizers the set fields concern: ``"weights"``, ``"activation"``."""
        return frozenset(_FIELDS[k][0] for k in self.set_fields())

    def then(self, later: NodeOverride) -> NodeOverride:
        """``self`` with every field ``later`` sets replaced (a later rule wins)."""
        return dataclasses.replace(self, **later.set_fields())


def node_override(fields: Mapping[str, Any], where: str) -> NodeOverride:
    """A :class:`NodeOverride` from a mapping of field names (jq's ``overrides`` values), or
    the :class:`NodeOverride` given.

    Raises:
      TypeError: ``fields`` is not a mapping; ValueError: an unknown or no field name, or a bad
        value (``where`` names the entry).
    """
    if isinstance(fields, NodeOverride):
        if not fields.set_fields():
            raise ValueError(f"{where}: sets no field; the fields are {', '.join(_FIELDS)}")
        return fields
    if not isinstance(fields, Mapping):
        raise TypeError(
            f"{where}: must be a mapping of field names to values or a NodeOverride, got "
            f"{type(fields).__name__}"
        )
    unknown = [k for k in fields if k not in _FIELDS]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(str(k), list(_FIELDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{where}: unknown field {k!r}{hint}; the fields are {', '.join(_FIELDS)}")
    if not fields:
        raise ValueError(f"{where}: sets no field; the fields are {', '.join(_FIELDS)}")
    try:
        return NodeOverride(**fields)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {str(e).removeprefix('NodeOverride: ')}") from None


class Selector(NamedTuple):
    """Which nodes a rule applies to.

    Attributes:
      kind: ``"glob"`` (jq pattern), ``"name"`` (MCT ``NodeNameFilter``), ``"scope"``
        (``NodeNameScopeFilter``: a substring), ``"ops"`` (``NodeTypeFilter``: jq ops),
        ``"and"`` / ``"or"`` / ``"not"`` of ``parts``, or ``"any"``.
      text: the pattern, name, scope or type name.
      ops: the jq ops a ``"ops"`` selector matches.
      parts: the operands of ``"and"``, ``"or"``, ``"not"``.
    """

    kind: str
    text: str = ""
    ops: frozenset[str] = frozenset()
    parts: tuple[Selector, ...] = ()

    def matches(self, names: tuple[str, ...], op: str) -> bool:
        """Whether a node is selected: ``names`` is its jq name, then its other spellings
        (see :func:`spellings`), ``op`` its op. A glob matches the jq name; MCT's filters
        (``NodeNameFilter``, ``NodeNameScopeFilter``) any spelling."""
        k = self.kind
        if k == "glob":
            return fnmatch.fnmatchcase(names[0], self.text)
        if k == "name":
            return self.text in names
        if k == "scope":
            return any(self.text in n for n in names)
        if k == "ops":
            return op in self.ops
        if k == "and":
            return all(p.matches(names, op) for p in self.parts)
        if k == "or":
            return any(p.matches(names, op) for p in self.parts)
        if k == "not":
            return not self.parts[0].matches(names, op)
        return True  # "any"


def spellings(name: str, aliases: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Node ``name`` as jq prints it, then as MCT does: ``.`` as ``_`` (MCT names
    ``layer1.0.conv1`` ``layer1_0_conv1``) and any ``aliases`` pointing at it (MCT renames a
    conv that absorbed a batch norm ``<conv>_bn``)."""
    out = [name, _mct_name(name)]
    for a, n in (aliases or {}).items():
        if n == name:
            out += [a, _mct_name(a)]
    return tuple(dict.fromkeys(out))


def _mct_name(name: str) -> str:
    return name.replace(".", "_")


class Rule(NamedTuple):
    """One steering rule: the nodes it selects, what it sets, and where it came from.

    Attributes:
      selector: the :class:`Selector`.
      override: the :class:`NodeOverride` it applies.
      source: the rule in words, for messages (``"overrides['layer2.*']"``,
        ``"debug_config.network_editor[0] (NodeNameFilter('conv1'))"``).
      final: an MCT ``ChangeFinal*`` action: in compat mode its bit widths change the
        quantizer after the search (which ran at the earlier bit width), as in MCT.
    """

    selector: Selector
    override: NodeOverride
    source: str
    final: bool = False


# -- parsing ---------------------------------------------------------------------------------


def parse_rules(
    *,
    overrides: Any = None,
    debug_config: Any = None,
    bit_width_config: Any = None,
    activation_error_method: Any = None,
) -> tuple[Rule, ...]:
    """Every steering rule of a ``CoreConfig``, in the order they apply (bit widths, network
    editor, overrides).

    Args:
      overrides: jq's mapping ``{pattern: {field: value}}`` or ``None``.
      debug_config: MCT's ``DebugConfig`` or ``None``.
      bit_width_config: MCT's ``BitWidthConfig`` or ``None``.
      activation_error_method: the global activation error method (a per-node HMSE is
        refused unless it is HMSE too).

    Raises:
      TypeError / ValueError: anything jq cannot apply, naming the entry and the problem.
    """
    rules = _bit_width_rules(bit_width_config) + _editor_rules(debug_config)
    rules += _override_rules(overrides)
    for r in rules:
        hmse = r.override.activation_error_method is ErrorMethod.HMSE
        if hmse and activation_error_method is not ErrorMethod.HMSE:
            raise ValueError(
                f"CoreConfig: {r.source} sets activation_error_method=HMSE on single nodes; "
                "activation HMSE weights the statistics of every value with Hessian scores, so "
                "set it in QuantizationConfig(activation_error_method=HMSE) for all of them"
            )
    return rules


def _override_rules(overrides: Any) -> tuple[Rule, ...]:
    if overrides is None:
        return ()
    if not isinstance(overrides, Mapping):
        raise TypeError(
            "CoreConfig: overrides must be a mapping {node-name pattern: {field: value}}, got "
            f"{type(overrides).__name__}"
        )
    rules = []
    for pattern, fields in overrides.items():
        where = f"CoreConfig: overrides[{pattern!r}]"
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"{where}: a pattern must be a non-empty str (a node name or glob)")
        o = node_override(fields, where)
        rules.append(Rule(Selector("glob", pattern), o, f"overrides[{pattern!r}]"))
    return tuple(rules)


def _bit_width_rules(bwc: Any) -> tuple[Rule, ...]:
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


def _editor_rules(dc: Any) -> tuple[Rule, ...]:
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
    from ..graph.ops import registered_ops

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


def describe(s: Selector) -> str:
    """A selector in MCT's (or jq's) words."""
    if s.kind == "glob":
        return repr(s.text)
    if s.kind == "name":
        return f"NodeNameFilter({s.text!r})"
    if s.kind == "scope":
        return f"NodeNameScopeFilter({s.text!r})"
    if s.kind == "ops":
        return f"NodeTypeFilter({s.text})"
    if s.kind == "not":
        return f"not {describe(s.parts[0])}"
    if s.kind in ("and", "or"):
        return f" {'&' if s.kind == 'and' else '|'} ".join(describe(p) for p in s.parts)
    return "any node"


# -- resolution on a graph -------------------------------------------------------------------


class KernelConfig(NamedTuple):
    """How one kernel is quantized (the global settings, or a node's override).

    Attributes:
      error_method: an :class:`ErrorMethod`, or ``AutoErrorMethod.AUTO``.
      n_bits: the quantizer's bit width.
      method: the :class:`QuantizationMethod`.
      per_channel: per output channel thresholds.
      search_n_bits: the bit width the parameters are searched for: ``n_bits``, except in
        compat mode after an MCT ``ChangeFinal*`` action (MCT searched before it applied).
    """

    error_method: ErrorMethod | AutoErrorMethod
    n_bits: int
    method: QuantizationMethod
    per_channel: bool
    search_n_bits: int


class ActConfig(NamedTuple):
    """How one value's activation quantizer is set up (see :class:`KernelConfig`)."""

    error_method: ErrorMethod | AutoErrorMethod
    n_bits: int
    method: QuantizationMethod
    search_n_bits: int


def default_kernel_config(qc: Any, tp: Any) -> KernelConfig:
    """The global kernel settings of ``QuantizationConfig`` ``qc`` and ``TargetPlatform``
    ``tp``."""
    n = tp.weights_n_bits
    return KernelConfig(
        qc.weights_error_method, n, tp.weights_quantization_method,
        tp.weights_per_channel_threshold, n,
    )  # fmt: skip


def default_act_config(qc: Any, tp: Any) -> ActConfig:
    """The global activation settings of ``qc`` and ``tp``."""
    n = tp.activation_n_bits
    return ActConfig(qc.activation_error_method, n, tp.activation_quantization_method, n)


class Steering(NamedTuple):
    """The rules resolved on one graph.

    Attributes:
      kernels: ``{layer: KernelConfig}`` for every quantized kernel.
      acts: ``{value: ActConfig}`` for every value with an activation quantizer.
      plan: the quantizer placement without the kernels and values steered off.
      notes: one line per rule: what it set on which nodes (``QuantizationInfo.notes``).
    """

    kernels: dict[str, KernelConfig]
    acts: dict[str, ActConfig]
    plan: Plan
    notes: tuple[str, ...] = ()


def resolve(
    rules: Sequence[Rule],
    graph: Graph,
    plan: Plan,
    *,
    qc: Any,
    tp: Any,
    compat: bool = False,
    aliases: Mapping[str, str] | None = None,
    defaults: Mapping[str, NodeOverride] | None = None,
    fn: str = "jq",
) -> Steering:
    """Every quantizer's settings on ``graph`` (batch norms folded) after ``rules``.

    Args:
      rules: from :func:`parse_rules`, in order (a later rule wins field by field).
      graph: the float graph whose node names the rules select.
      plan: its quantizer placement.
      qc, tp: the global ``QuantizationConfig`` and ``TargetPlatform``.
      compat: MCT's order for ``ChangeFinal*`` bit widths (see :class:`KernelConfig`).
      aliases: ``{other name: node name}`` MCT's filters match too (:func:`spellings`).
      defaults: jq's own per-node settings, applied before ``rules`` (which win field by
        field): the default mode's wider normalization inputs.
      fn: the entry point's name, for messages.

    Returns:
      :class:`Steering`.

    Raises:
      ValueError: a rule that matches no node (naming the closest names), or only nodes
        without the quantizer its fields set.
    """
    named = [(i, "input") for i in graph.inputs] + [(n.name, n.op) for n in graph.nodes]
    nodes = [(spellings(n, aliases), op) for n, op in named]
    has = {_WEIGHTS: {k for k, _ in plan.kernels}, _ACTIVATION: set(plan.activations)}
    cand: dict[str, NodeOverride] = dict(defaults or {})
    final: dict[str, NodeOverride] = {}
    notes = []
    for r in rules:
        hit = _matched(r, nodes, has, plan, fn)
        target = final if r.final and compat else cand
        for m in hit:
            target[m] = target.get(m, NodeOverride()).then(r.override)
        shown = ", ".join(hit[:8]) + (f" and {len(hit) - 8} more" if len(hit) > 8 else "")
        notes.append(f"steering: {r.source} -> {shown}: {_fields_text(r.override)}")
    k0, a0 = default_kernel_config(qc, tp), default_act_config(qc, tp)
    kernels = {k: _kernel(k0, cand.get(k), final.get(k)) for k, _ in plan.kernels}
    acts = {v: _act(a0, cand.get(v), final.get(v)) for v in plan.activations}
    off_k = {k for k in kernels if not _enabled(cand, final, k, "enable_weights_quantization")}
    off_a = {v for v in acts if not _enabled(cand, final, v, "enable_activation_quantization")}
    steered = plan._replace(
        kernels=tuple(ka for ka in plan.kernels if ka[0] not in off_k),
        activations=tuple(v for v in plan.activations if v not in off_a),
    )
    kernels = {k: c for k, c in kernels.items() if k not in off_k}
    acts = {v: c for v, c in acts.items() if v not in off_a}
    return Steering(kernels, acts, steered, tuple(notes))


def _fields_text(o: NodeOverride, kind: str | None = None) -> str:
    """The fields ``o`` sets (of ``kind`` only, if given), as ``name=value``."""

    def text(v: Any) -> str:
        return v.value if isinstance(v, (ErrorMethod, AutoErrorMethod, QuantizationMethod)) else v

    items = [(k, v) for k, v in o.set_fields().items() if kind in (None, _FIELDS[k][0])]
    return ", ".join(f"{k}={text(v)}" for k, v in items)


def _enabled(cand: dict, final: dict, name: str, field: str) -> bool:
    for src in (final, cand):
        v = getattr(src.get(name), field, None) if name in src else None
        if v is not None:
            return v
    return True


def _kernel(base: KernelConfig, o: NodeOverride | None, f: NodeOverride | None) -> KernelConfig:
    cfg = base
    if o is not None:
        n = o.weights_n_bits or cfg.n_bits
        cfg = KernelConfig(
            o.weights_error_method or cfg.error_method,
            n,
            o.weights_quantization_method or cfg.method,
            cfg.per_channel
            if o.weights_per_channel_threshold is None
            else o.weights_per_channel_threshold,
            n,
        )
    if f is not None and f.weights_n_bits is not None:  # after the search (compat)
        cfg = cfg._replace(n_bits=f.weights_n_bits)
    return cfg


def _act(base: ActConfig, o: NodeOverride | None, f: NodeOverride | None) -> ActConfig:
    cfg = base
    if o is not None:
        n = o.activation_n_bits or cfg.n_bits
        cfg = ActConfig(
            o.activation_error_method or cfg.error_method,
            n,
            o.activation_quantization_method or cfg.method,
            n,
        )
    if f is not None and f.activation_n_bits is not None:  # after the search (compat)
        cfg = cfg._replace(n_bits=f.activation_n_bits)
    return cfg


def _matched(
    r: Rule,
    nodes: list[tuple[tuple[str, ...], str]],
    has: dict[str, set[str]],
    plan: Plan,
    fn: str,
) -> list[str]:
    """The nodes ``r`` applies to: those it selects that have a quantizer its fields set.

    Raises:
      ValueError: it selects no node, or, for a kind of field it sets, no node with that
        quantizer.
    """
    sel = [names[0] for names, op in nodes if r.selector.matches(names, op)]
    if not sel:
        raise ValueError(
            f"{fn}: {r.source} matches no node of the model; {_closest(r.selector, nodes)} "
            "(node names as QuantizationInfo.layers and the report print them)"
        )
    kinds = r.override.kinds()
    for kind in sorted(kinds):
        if not any(n in has[kind] for n in sel):
            raise ValueError(
                f"{fn}: {r.source} sets {kind} fields ({_fields_text(r.override, kind)}) but "
                "none of "
                f"the nodes it matches has a{'n' if kind == _ACTIVATION else ''} {kind} "
                f"quantizer: {', '.join(sel[:5])}{_why_none(kind, sel, has, plan)}"
            )
    return [n for n in sel if any(n in has[k] for k in kinds)]


def _why_none(kind: str, sel: list[str], has: dict[str, set[str]], plan: Plan) -> str:
    if kind == _WEIGHTS:
        return f" (quantized kernels: {', '.join(sorted(has[_WEIGHTS])[:8]) or 'none'})"
    fused = dict(plan.fused)
    hints = [f"{n} is fused with {fused[n]} (set it on {fused[n]!r})" for n in sel if n in fused]
    if hints:
        return "; " + "; ".join(hints[:3])
    return " (shape ops, max-pool and constants carry no quantizer of their own)"


# Names people give the last and first layers of a network: a rule naming one that the model
# spells otherwise (``classifier`` on a ResNet, whose head is ``fc``) is pointed at the layer
# by its role as well as by spelling.
_HEAD_WORDS = frozenset(
    {"classifier", "head", "heads", "fc", "logits", "output", "out", "last", "final", "cls",
     "predictions", "prediction", "lm_head", "top"}
)  # fmt: skip
_STEM_WORDS = frozenset({"stem", "first", "conv1", "conv_stem", "input", "patch_embed", "embed"})
_KERNEL_OPS = ("linear", "conv", "conv_transpose")


def _by_role(key: str, nodes: list[tuple[tuple[str, ...], str]]) -> list[str]:
    """The nodes ``key`` names by role: the last linear layer (else the last kernel) for a
    head-like word, the first kernel for a stem-like one."""
    words = {w for w in re.split(r"[^a-z0-9_]+", key.lower()) if w}
    words |= {p for w in words for p in w.split("_")}
    kernels = [n[0] for n, op in nodes if op in _KERNEL_OPS]
    if words & _HEAD_WORDS:
        linear = [n[0] for n, op in nodes if op == "linear"]
        return (linear or kernels)[-1:]
    if words & _STEM_WORDS:
        return kernels[:1]
    return []


def _closest(s: Selector, nodes: list[tuple[tuple[str, ...], str]]) -> str:
    names = [n[0] for n, _ in nodes]
    if s.kind == "ops":
        return f"the model's ops: {', '.join(sorted({op for _, op in nodes}))}"
    if s.kind in ("glob", "name", "scope"):
        by_spelling = {a: n[0] for n, _ in nodes for a in n}
        key = s.text.replace("*", "").replace("?", "") if s.kind == "glob" else s.text
        role = _by_role(key, nodes)
        close = difflib.get_close_matches(key, list(by_spelling), n=5, cutoff=0.3)
        close = [c for c in dict.fromkeys(by_spelling[c] for c in close) if c not in role]
        shown = [f"{r!r} (the model's {_role_text(r, nodes)})" for r in role]
        shown += [repr(c) for c in close[: 5 - len(shown)]]
        if shown:
            return f"closest names: {', '.join(shown)}"
    return f"its names: {', '.join(map(repr, names[:8]))}{', ...' if len(names) > 8 else ''}"


def _role_text(name: str, nodes: list[tuple[tuple[str, ...], str]]) -> str:
    ops = {n[0]: op for n, op in nodes}
    kernels = [n[0] for n, op in nodes if op in _KERNEL_OPS]
    linear = [n[0] for n, op in nodes if op == "linear"]
    if linear and name == linear[-1]:
        return "last linear layer"
    place = "first" if kernels and name == kernels[0] else "last"
    return f"{place} {ops[name]} layer"


def steer(st: Any, prep: Any, source: Graph) -> tuple[Any, Any]:
    """The pipeline's steering pass: ``Settings`` with the rules resolved on ``prep``'s graph
    (``Settings.steering``) and ``Prepared`` with the steered plan. ``source`` is the graph
    before batch-norm folding: MCT's filters also know a conv that absorbed batch norm ``bn``
    by MCT's name for it, ``<conv>_bn``."""
    aliases = {}
    for n in source.nodes:
        if n.name in prep.folded and n.inputs:
            aliases[n.inputs[0] + "_bn"] = n.inputs[0]
    wide = _wide_norm_inputs(prep, st)
    s = resolve(
        st.rules, prep.graph, prep.plan, qc=st.qc, tp=st.tp, compat=st.compat,
        aliases=aliases, defaults=wide, fn=st.fn,
    )  # fmt: skip
    if wide:
        shown = ", ".join(list(wide)[:6]) + (f" and {len(wide) - 6} more" if len(wide) > 6 else "")
        note = f"normalization inputs at {NORM_INPUT_BITS} bits: {len(wide)} values ({shown})"
        s = s._replace(notes=(note, *s.notes))
    return st._replace(steering=s), prep._replace(plan=s.plan)


def _wide_norm_inputs(prep: Any, st: Any) -> dict[str, NodeOverride]:
    """The default mode's departure from MCT's bit widths: every value a normalization reads
    (and the residual stream behind it, :func:`placement.norm_inputs`) is quantized at
    ``NORM_INPUT_BITS`` bits, if the platform's activation width is lower. None in compat
    mode."""
    if st.compat or st.tp.activation_n_bits >= NORM_INPUT_BITS:
        return {}
    wide = norm_inputs(prep.graph, frozenset(prep.plan.activations))
    override = NodeOverride(activation_n_bits=NORM_INPUT_BITS)
    return {v: override for v in prep.plan.activations if v in wide}
