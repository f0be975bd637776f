"""The SQNR pass: each quantized value's and the model outputs' SQNR against the float model.

One compiled step per retained batch runs the float and the quantized graph and sums, per
:class:`Pair`, the signal ``sum (f + offset)^2`` and the noise ``sum (f + offset - q)^2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..graph.apply import apply
from ..graph.graph import Graph
from ..runtime.jit import jit
from .build import Built
from .data import Arrays, Retained, accumulate
from .prepare import Prepared
from .probe import ProbeSpec, float_params, quantized_params, run_probe, value_of

SQNR_BATCHES = 1  # batches kept (inputs only) to measure per-layer SQNR after quantization


class Pair(NamedTuple):
    """A float value, its quantized counterpart, and the offset between them (a shift-negative
    correction's shift)."""

    float_value: str
    quantized: str
    offset: float = 0.0


class Sqnr(NamedTuple):
    """SQNR in dB per :class:`Pair`, and of the model's float outputs together (``None``
    without float outputs)."""

    per_pair: dict[Pair, float]
    output: float | None


def _sqnr_sums(fparams, qparams, inputs, *, fgraph, qgraph, pairs):
    fnames = tuple(dict.fromkeys(p.float_value for p in pairs))
    qnames = tuple(dict.fromkeys(p.quantized for p in pairs))
    _, fa = apply(fgraph, fparams, *inputs, capture=fnames)
    _, qa = apply(qgraph, qparams, *inputs, capture=qnames)
    sig = jnp.stack([jnp.sum(jnp.square(fa[f] + o)) for f, _, o in pairs])
    noise = jnp.stack([jnp.sum(jnp.square(fa[f] + o - qa[q])) for f, q, o in pairs])
    return sig, noise


_sqnr_sums_jit = jit(_sqnr_sums, static_argnames=("fgraph", "qgraph", "pairs"))


def sqnr_totals(
    fparams, built: Built, batches: Sequence[Arrays], fgraph: Graph, pairs: tuple[Pair, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """``(signal, noise)`` per pair, summed over ``batches`` (float64)."""

    def step(acc, _graph, arrays):
        s, e = _sqnr_sums_jit(
            fparams,
            built.params,
            tuple(arrays),
            fgraph=fgraph,
            qgraph=built.graph,
            pairs=pairs,
        )
        return acc[0] + np.asarray(s, np.float64), acc[1] + np.asarray(e, np.float64)

    zeros = (np.zeros(len(pairs)), np.zeros(len(pairs)))
    return accumulate(batches, lambda _: fgraph, step, zeros)[0]


def probe_totals(
    prep: Prepared,
    built: Built,
    batches: Sequence[Arrays],
    spec: ProbeSpec,
    pairs: tuple[Pair, ...],
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(signal, noise)`` per pair (float64) from two runs of the probe program per batch;
    ``None`` where the quantized params do not fit the probe's (then the quantized graph
    runs)."""

    def step(acc, graph, arrays):
        if acc is None:
            return None
        probe = spec.probe(graph)
        fp = float_params(prep.params, probe, spec.channels)
        try:
            qp = quantized_params(fp, built.params, built.qname, probe, spec.channels)
        except (ValueError, KeyError):  # a structure the probe does not have
            return None
        f_out, f_caps, _ = jax.device_get(run_probe(probe, fp, arrays))
        q_out, q_caps, _ = jax.device_get(run_probe(probe, qp, arrays))
        sig, noise = acc
        for i, p in enumerate(pairs):
            f = np.asarray(value_of(probe, f_out, f_caps, p.float_value), np.float64) + p.offset
            q = np.asarray(value_of(probe, q_out, q_caps, p.float_value), np.float64)
            sig[i] += float(np.sum(np.square(f)))
            noise[i] += float(np.sum(np.square(f - q)))
        return sig, noise

    zeros = (np.zeros(len(pairs)), np.zeros(len(pairs)))
    return accumulate(batches, lambda s: prep.graphs(s), step, zeros)[0]


def db(sig: float, noise: float) -> float:
    """``10 log10(sig / noise)`` (``inf`` without noise, ``-inf`` without signal)."""
    if noise <= 0:
        return float("inf")
    if sig <= 0:
        return float("-inf")
    return float(10.0 * np.log10(sig / noise))


def output_db(prep: Prepared, built: Built, batches: Sequence[Arrays], outputs: list[str]) -> float:
    """SQNR (dB) of the float outputs ``outputs`` of ``built`` against the float graph."""
    qouts = dict(zip(prep.graph.outputs, built.graph.outputs, strict=True))
    pairs = tuple(Pair(f, qouts[f]) for f in outputs)
    sig, noise = sqnr_totals(prep.params, built, batches, prep.graph, pairs)
    return db(float(np.sum(sig)), float(np.sum(noise)))


def measure_sqnr(
    prep: Prepared, built: Built, retained: Retained, probe: ProbeSpec | None = None
) -> Sqnr:
    """Every quantized value's, kernel layer's and float output's SQNR on the first
    ``SQNR_BATCHES`` retained batches; with ``probe``, by the model's probe program (gates off,
    then on) where the quantized graph is the probe's (no shift-negative correction)."""
    qname, fgraph = built.qname, prep.graph
    pairs = [Pair(v, qname[v]) for v in prep.plan.activations]
    pairs += [Pair(s.shift.value, s.quantizer, s.shift.shift) for s in built.shifts]
    pairs += [Pair(k, k) for k in prep.kernel_names if k not in qname]
    out_pairs = [
        Pair(f, q)
        for f, q in zip(fgraph.outputs, built.graph.outputs, strict=True)
        if f in prep.float_values
    ]
    all_pairs = tuple(pairs + out_pairs)
    sig = noise = np.zeros(len(all_pairs))
    if all_pairs:
        batches = retained.batches[:SQNR_BATCHES]
        totals = None
        if probe is not None and not built.shifts:
            totals = probe_totals(prep, built, batches, probe, all_pairs)
        if totals is None:
            totals = sqnr_totals(prep.params, built, batches, fgraph, all_pairs)
        sig, noise = totals
    per_pair = {p: db(s, e) for p, s, e in zip(all_pairs, sig, noise, strict=True)}
    out = None
    if out_pairs:
        out = db(float(sum(sig[len(pairs) :])), float(sum(noise[len(pairs) :])))
    return Sqnr(per_pair, out)


def check_finite(sqnr: Sqnr, fn: str) -> None:
    """Refuse a quantized model that computes non-finite values where the float one does not
    (a quantizer with an infinite or NaN grid, an overflow): a NaN SQNR means NaN or inf noise.

    Raises:
      ValueError: naming the first such quantized values in graph order.
    """
    bad = [p.float_value for p, v in sqnr.per_pair.items() if np.isnan(v)]
    if bad:
        raise ValueError(
            f"{fn}: the quantized model computes non-finite values (NaN or inf) at {bad[:5]} "
            "on the calibration data where the float model is finite; no model is returned. "
            "A quantizer there has no finite grid: check those values' ranges in the float "
            "model (README: 'Mask values')"
        )
