"""One compiled forward per model for the statistics and SQNR passes: the float graph with a
gated quantizer after every planned value, its grids and gates as operands.

The statistics pass runs it with every gate off (the float model) and reads the activations it
returns; the SQNR pass runs the same program twice on a kept batch, gates off and on with the
quantized params, so it compiles nothing. Without the probe each pass compiled a program of its
own (GhostNet: statistics 10.4 s, SQNR 8.4 s on the 2-core VM).

A gate computes ``where(on, clip(round(x / scale), q_min, q_max) * scale, x)``: with ``on`` it
is the quantized graph's ``fake_quant`` bit for bit. Every kernel layer carries a bias (zeros
where the float model has none) so the float and quantized params share one structure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..graph.apply import apply
from ..graph.graph import Graph, Node
from ..graph.ops.quantization import GATE_OP
from ..runtime.jit import jit

GATE_SUFFIX = "#gate"
BIASED_OPS = ("conv", "conv_transpose", "linear")
_OFF = {"scale": 1.0, "q_min": -1.0, "q_max": 1.0, "on": 0.0}


class Probe(NamedTuple):
    """The gated graph of a float graph.

    Attributes:
      graph: the float graph with a ``ptq_gate`` node after each planned value.
      gates: ``{value: gate node}``.
      capture: the values the program returns: each planned value's gate, the inputs of the
        bias-corrected layers, the kernel layers' outputs.
      mean_specs: ``((layer, (captured value, channel_axis)), ...)``: per-channel means
        returned (of a gated value, read after its gate).
      kernels: the kernel layers (captured: after their gate where they have one).
    """

    graph: Graph
    gates: tuple[tuple[str, str], ...]
    capture: tuple[str, ...]
    mean_specs: tuple[tuple[str, tuple[str, int]], ...]
    kernels: tuple[str, ...]

    def gate(self, value: str) -> str:
        return dict(self.gates)[value]

    def captured(self, value: str) -> str:
        """The captured name holding ``value`` (its gate where it has one)."""
        return dict(self.gates).get(value, value)


def make_probe(
    graph: Graph,
    planned: Sequence[str],
    mean_specs: Sequence[tuple[str, tuple[str, int]]],
    kernels: Sequence[str],
) -> Probe:
    """The :class:`Probe` of ``graph`` for quantizers after ``planned`` values."""
    gates = {v: v + GATE_SUFFIX for v in planned}

    def gate(v: str) -> Node:
        return Node(gates[v], GATE_OP, (v,))

    nodes: list[Node] = [gate(i) for i in graph.inputs if i in gates]
    for n in graph.nodes:
        if any(i in gates for i in n.inputs):
            n = n.replace(inputs=tuple(gates.get(i, i) for i in n.inputs))
        nodes.append(n)
        if n.name in gates:
            nodes.append(gate(n.name))
    outputs = tuple(gates.get(o, o) for o in graph.outputs)
    # A gated value is read after its gate (equal to it with the gate off): each output of the
    # program costs compile time (GhostNet: 331 outputs 5.8 s, 167 gates alone 4.0 s).
    means = tuple((layer, (gates.get(src, src), axis)) for layer, (src, axis) in mean_specs)
    capture = [gates[v] for v in planned] + [src for _, (src, _) in means]
    capture += [k for k in kernels if k not in gates]
    return Probe(
        graph.replace(nodes=tuple(nodes), outputs=outputs),
        tuple(gates.items()),
        tuple(dict.fromkeys(capture)),
        means,
        tuple(kernels),
    )


class ProbeSpec(NamedTuple):
    """What a PTQ call's probes hold (fixed before the statistics pass, so the statistics and
    SQNR passes build the same probe, hence the same program, for a graph).

    Attributes:
      planned: the values that may get a quantizer.
      mean_specs: see :class:`Probe`.
      kernels: the kernel layers.
      channels: ``((layer, output channels), ...)`` of the kernel layers that take a bias
        (each gets one).
    """

    planned: tuple[str, ...]
    mean_specs: tuple[tuple[str, tuple[str, int]], ...]
    kernels: tuple[str, ...]
    channels: tuple[tuple[str, int], ...]

    def probe(self, graph: Graph) -> Probe:
        return make_probe(graph, self.planned, self.mean_specs, self.kernels)


def _forward(params, inputs, *, graph, capture, mean_specs):
    out, acts = apply(graph, params, *inputs, capture=capture)
    means = {}
    for layer, (src, axis) in mean_specs:
        x = acts[src]
        axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
        means[layer] = jnp.mean(x.astype(jnp.float32), axis=axes)
    return (out if isinstance(out, tuple) else (out,)), acts, means


_forward_jit = jit(_forward, static_argnames=("graph", "capture", "mean_specs"))


def run_probe(probe: Probe, params, inputs: Sequence[Any]):
    """``(outputs, {captured: value}, {layer: channel mean (C,) float32})`` of one batch."""
    return _forward_jit(
        params,
        tuple(inputs),
        graph=probe.graph,
        capture=probe.capture,
        mean_specs=probe.mean_specs,
    )


def _host(a: Any, like: Any = None) -> np.ndarray:
    """``a`` as a NumPy array (of ``like``'s dtype); NumPy, since an eager jax cast or zeros
    compiles a program per shape."""
    out = np.asarray(a)
    return out if like is None else out.astype(np.asarray(like).dtype, copy=False)


def _with_biases(params: Mapping, channels: Sequence[tuple[str, int]]) -> dict:
    """``params`` with a zero bias for each layer of ``channels`` that has none."""
    out = {k: dict(v) for k, v in params.items()}
    for k, c in channels:
        if "bias" not in out.get(k, {}):
            out[k]["bias"] = np.zeros(c, np.asarray(out[k]["weight"]).dtype)
    return out


def float_params(params: Mapping, probe: Probe, channels: Sequence[tuple[str, int]]) -> dict:
    """The probe's params for the float model: every gate off."""
    out = _with_biases(params, channels)
    for _, g in probe.gates:
        out[g] = {k: np.float32(v) for k, v in _OFF.items()}
    return out


def quantized_params(
    float_like: Mapping,
    qparams: Mapping,
    qname: Mapping[str, str],
    probe: Probe,
    channels: Sequence[tuple[str, int]],
) -> dict:
    """The probe's params for a quantized model (``qparams``, the quantized graph's, and its
    quantizers ``qname``): gates on where a quantizer is, off elsewhere; each leaf cast to the
    float params' dtype (``float_like``) so both runs share one program."""
    out = _with_biases({k: qparams[k] for k in float_like if k in qparams}, channels)
    for v, g in probe.gates:
        if v in qname:
            grid = qparams[qname[v]]
            out[g] = {k: np.float32(grid[k]) for k in ("scale", "q_min", "q_max")}
            out[g]["on"] = np.float32(1.0)
        else:
            out[g] = {k: np.float32(v) for k, v in _OFF.items()}
    return jax.tree.map(_host, out, dict(float_like))


def value_of(probe: Probe, outputs: Sequence[Any], caps: Mapping[str, Any], name: str) -> Any:
    """The value at float value ``name`` in one run of ``probe`` (after its gate, if any)."""
    key = probe.captured(name)
    if key in caps:
        return caps[key]
    return outputs[probe.graph.outputs.index(key)]
