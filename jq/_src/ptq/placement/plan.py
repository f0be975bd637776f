"""The quantizer plan: every quantizer of a model and how it is set up, decided in one place.

:func:`place` is the plan's one owner. It takes the platform's placement
(:func:`~.platform.plan_quantization`: which kernels and values MCT's default platform
quantizes), applies jq's policy (:mod:`.policy`: the default mode's wider normalization
inputs) and then the user's steering (``steering.resolve``: per-node settings, quantizers
switched off), and returns a :class:`Plan` that later passes only read. The one decision that
needs data, mask values left unquantized, is placement's too (:mod:`.masks`, after the
statistics pass).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from ...graph.graph import Graph
from ...select.enums import AutoErrorMethod, ErrorMethod, QuantizationMethod
from ..steering import NodeOverride, Rule, Steering, resolve
from .platform import Placement, plan_quantization
from .policy import policy_note, wide_norm_inputs


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


class Plan(NamedTuple):
    """Every quantizer of a model and its settings (read only: a later pass makes none).

    Attributes:
      kernels: ``(layer, channel_axis)`` of every quantized kernel, in graph order.
      activations: the values (graph inputs and nodes) with an activation quantizer, inputs
        first, then in graph order.
      fused: ``(layer, activation)`` pairs whose layer output is not quantized.
      kernel_configs: ``{layer: KernelConfig}`` for every quantized kernel.
      act_configs: ``{value: ActConfig}`` for every quantized value.
      notes: what jq's policy and each steering rule set, on which nodes
        (``QuantizationInfo.notes``).
      masks: the values left unquantized because they carry mask constants
        (:func:`.masks.without_masks`, after the statistics pass; ``()`` before).
    """

    kernels: tuple[tuple[str, int], ...]
    activations: tuple[str, ...]
    fused: tuple[tuple[str, str], ...]
    kernel_configs: Mapping[str, KernelConfig]
    act_configs: Mapping[str, ActConfig]
    notes: tuple[str, ...] = ()
    masks: tuple[str, ...] = ()

    def kernel(self, name: str) -> KernelConfig:
        """How kernel ``name`` is quantized."""
        return self.kernel_configs[name]

    def act(self, name: str) -> ActConfig:
        """How value ``name``'s activation quantizer is set up."""
        return self.act_configs[name]

    def _methods(self, kind: str) -> set:
        cfgs = self.kernel_configs if kind == "weights" else self.act_configs
        return {c.error_method for c in cfgs.values()}

    @property
    def act_auto(self) -> bool:
        """Whether some value's error method is AUTO."""
        return AutoErrorMethod.AUTO in self._methods("activation")

    @property
    def w_auto(self) -> bool:
        """Whether some kernel's error method is AUTO."""
        return AutoErrorMethod.AUTO in self._methods("weights")

    @property
    def w_hmse(self) -> bool:
        """Whether some kernel's error method is HMSE (not counting AUTO's candidate)."""
        return ErrorMethod.HMSE in self._methods("weights")

    @property
    def needs_scores(self) -> bool:
        """Whether kernels need Hessian scores (HMSE, or AUTO's HMSE candidate)."""
        return self.w_hmse or self.w_auto


def place(
    graph: Graph,
    *,
    qc: Any,
    tp: Any,
    rules: Sequence[Rule] = (),
    float_values: frozenset[str] | None = None,
    aliases: Mapping[str, str] | None = None,
    fn: str = "jq",
) -> Plan:
    """The quantizer plan of ``graph``: the platform's placement, jq's policy, then the
    user's steering rules.

    Args:
      graph: the float graph (batch norms folded, collapsed).
      qc, tp: the global ``QuantizationConfig`` and ``TargetPlatform`` (``qc.mct_compat``:
        MCT's bit widths, no policy, ``ChangeFinal*`` actions after the search).
      rules: the steering rules (``CoreConfig.rules``), in order.
      float_values: the float-valued inputs and nodes (``None``: all); others get no
        quantizer.
      aliases: ``{other name: node name}`` MCT's filters match too (``steering.bn_aliases``).
      fn: the entry point's name, for messages.

    Returns:
      :class:`Plan`.

    Raises:
      ValueError: a rule that matches no node, or only nodes without the quantizer its
        fields set (``steering.resolve``).
    """
    compat = qc.mct_compat
    platform = plan_quantization(
        graph,
        float_values=float_values,
        quantize_inputs=tp.quantize_inputs,
        quantize_activations=tp.quantize_activations,
    )
    wide = wide_norm_inputs(
        graph, platform.activations, activation_n_bits=tp.activation_n_bits, compat=compat
    )
    steering = resolve(rules, graph, platform, compat=compat, aliases=aliases, fn=fn)
    return _apply(platform, wide, steering, qc, tp)


def _apply(
    platform: Placement, policy: Mapping[str, NodeOverride], steering: Steering, qc: Any, tp: Any
) -> Plan:
    """The :class:`Plan` of ``platform`` with the ``policy``'s settings, then the
    ``steering``'s (which win field by field), and the quantizers steered off removed."""
    cand = dict(policy)
    for name, o in steering.overrides.items():
        cand[name] = cand[name].then(o) if name in cand else o
    final = steering.final
    k0, a0 = default_kernel_config(qc, tp), default_act_config(qc, tp)
    kernels = {k: _kernel(k0, cand.get(k), final.get(k)) for k, _ in platform.kernels}
    acts = {v: _act(a0, cand.get(v), final.get(v)) for v in platform.activations}
    off_k = {k for k in kernels if not _enabled(cand, final, k, "enable_weights_quantization")}
    off_a = {v for v in acts if not _enabled(cand, final, v, "enable_activation_quantization")}
    return Plan(
        kernels=tuple(ka for ka in platform.kernels if ka[0] not in off_k),
        activations=tuple(v for v in platform.activations if v not in off_a),
        fused=platform.fused,
        kernel_configs=MappingProxyType({k: c for k, c in kernels.items() if k not in off_k}),
        act_configs=MappingProxyType({v: c for v, c in acts.items() if v not in off_a}),
        notes=(*policy_note(dict(policy)), *steering.notes),
    )


def _enabled(
    cand: Mapping[str, NodeOverride], final: Mapping[str, NodeOverride], name: str, field: str
) -> bool:
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
