"""The last PTQ pass: the :class:`QuantizationInfo` record of a quantized model."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..report.quant_info import LayerInfo, QuantizationInfo
from .auto_analysis import analysis_json
from .auto_select import Mix
from .build import Built, kernel_group
from .calibrate import Statistics
from .prepare import Prepared
from .quality import quality_findings, warn_quality
from .settings import Settings
from .snc import NON_LINEAR_BITS
from .sqnr import SQNR_BATCHES, Pair, Sqnr


def make_info(
    prep: Prepared,
    st: Settings,
    mix: Mix,
    built: Built,
    sqnr: Sqnr,
    stats: Statistics,
    *,
    n_retained: int,
    timings: dict[str, float],
) -> QuantizationInfo:
    """What was quantized and how: a :class:`LayerInfo` per kernel and activation quantizer,
    the model's output SQNR, the config, stage timings and notes.

    Warns:
      QualityWarning: once per quality problem of the result (see ``quality.quality_findings``:
      output SQNR under the floor, thresholds at the clamp floor on most layers, calibration
      activations near zero); the notes end with the same sentences, each after
      ``"warning: "``.
    """
    layers = _kernel_layers(prep, st, mix, built, sqnr) + _activation_layers(
        prep, st, mix, built, sqnr
    )
    findings = quality_findings(
        layers,
        sqnr.output,
        minimum=stats.minimum,
        maximum=stats.maximum,
        inputs=prep.graph.inputs,
        min_threshold=float(st.qc.min_threshold),
    )
    warn_quality(findings, st.fn)
    notes = _notes(prep, st, mix, built, stats, n_retained) + [f"warning: {f}" for f in findings]
    return QuantizationInfo(
        layers=tuple(layers),
        output_sqnr_db=sqnr.output,
        config=_config(st),
        timings=timings,
        notes=tuple(notes),
    )


def _analysis(mix: Mix, name: str, kind: str) -> dict[str, Any] | None:
    """``LayerInfo.analysis`` of one quantizer: what AUTO saw and chose (``None`` without
    AUTO)."""
    a = mix.analysis.get((name, kind))
    return None if a is None else analysis_json(a)


def _kernel_layers(prep: Prepared, st: Settings, mix: Mix, built: Built, sqnr: Sqnr):
    layers = []
    for j, ((k, axis), qp) in enumerate(zip(prep.plan.kernels, mix.kernels.qparams, strict=True)):
        uniform = qp.threshold is None
        cfg = prep.plan.kernel(k)
        layers.append(
            LayerInfo(
                name=k,
                kind="weights",
                op=prep.nodes[k].op,
                n_bits=cfg.n_bits,
                method=cfg.method.value,
                error_method=mix.kernels.methods[j],
                signed=True,
                threshold=None if uniform else np.asarray(qp.threshold).ravel().tolist(),
                range_min=np.asarray(qp.range_min).ravel().tolist() if uniform else None,
                range_max=np.asarray(qp.range_max).ravel().tolist() if uniform else None,
                channel_axis=axis if cfg.per_channel else None,
                group_size=kernel_group(prep, st, k),
                sqnr_db=sqnr.per_pair.get(Pair(k, built.qname.get(k, k))),
                analysis=_analysis(mix, k, "weights"),
            )
        )
    return layers


def _activation_layers(prep: Prepared, st: Settings, mix: Mix, built: Built, sqnr: Sqnr):
    layers = []
    for v in prep.plan.activations:
        r = built.ranges[v]
        uniform = r.threshold is None
        layers.append(
            LayerInfo(
                name=v,
                kind="activation",
                op=prep.op_of(v),
                n_bits=built.act_bits[v],
                method=prep.plan.act(v).method.value,
                error_method=mix.acts.quant[v].method,
                signed=r.signed,
                threshold=r.threshold,
                range_min=r.lo if uniform else None,
                range_max=r.hi if uniform else None,
                sqnr_db=sqnr.per_pair.get(Pair(v, built.qname[v])),
                analysis=_analysis(mix, v, "activation"),
            )
        )
    for s in built.shifts:
        cfg = prep.plan.act(s.shift.value)
        layers.append(
            LayerInfo(
                name=s.add,
                kind="activation",
                op="add",
                n_bits=cfg.n_bits,
                method=cfg.method.value,
                error_method=mix.acts.quant[s.shift.value].method,
                signed=False,
                threshold=s.shift.threshold,
                sqnr_db=sqnr.per_pair.get(Pair(s.shift.value, s.quantizer, s.shift.shift)),
            )
        )
    return layers


def _notes(
    prep: Prepared, st: Settings, mix: Mix, built: Built, stats: Statistics, n_retained: int
) -> list[str]:
    qc = st.qc
    notes = [
        f"batch norms folded: {len(prep.folded)}",
        _collapse_note(prep, st),
        f"layer+activation fused (no quantizer between): {len(prep.plan.fused)}",
        f"bias correction: {built.n_corrected} layers"
        if qc.weights_bias_correction
        else "bias correction: off",
        f"statistics: {stats.n_batches} batches; SQNR on the first {min(n_retained, SQNR_BATCHES)}",
    ]
    if qc.shift_negative_activation_correction:
        shifts = [s.shift for s in built.shifts]
        applied = ", ".join(f"{sh.value} (+{sh.shift:g} into {sh.layer})" for sh in shifts)
        notes.append(
            f"shift-negative correction: {len(shifts)} values"
            + (
                f": {applied}; each non-linearity quantized at {NON_LINEAR_BITS} bits"
                if shifts
                else ""
            )
        )
    else:
        notes.append("shift-negative correction: off")
    for kind in ("weights", "activation"):
        chosen = [a.chosen for (_, k), a in mix.analysis.items() if k == kind]
        if chosen:
            tally = ", ".join(f"{m} {chosen.count(m)}" for m in dict.fromkeys(chosen))
            notes.append(f"auto ({kind}): chosen per layer: {tally}")
    if mix.note:
        notes.append(mix.note)
    notes.extend(prep.plan.notes)
    masks = prep.plan.masks
    if masks:
        notes.append(f"mask values left unquantized (range beyond +-2**100): {', '.join(masks)}")
    if st.compat and not prep.folded and any(n.op == "batch_norm" for n in prep.graph.nodes):
        notes.append("batch norms left unfolded (no preceding conv with a single reader)")
    return notes


def _collapse_note(prep: Prepared, st: Settings) -> str:
    """``"linear and residual collapsing: 2: c1 + c2 -> c1_c2_collapsed, ..."`` (or off)."""
    qc = st.qc
    kinds = [
        k
        for k, on in (("linear", qc.linear_collapsing), ("residual", qc.residual_collapsing))
        if on
    ]
    if not kinds:
        return "collapsing: off"
    done = ", ".join(f"{a} + {b} -> {c.name}" for c in prep.collapsed for a, b in (c.sources,))
    return f"{' and '.join(kinds)} collapsing: {len(prep.collapsed)}" + (
        f": {done}" if done else ""
    )


def _config(st: Settings) -> dict:
    qc, tp = st.qc, st.tp
    return {
        "activation_error_method": qc.activation_error_method.value,
        "weights_error_method": qc.weights_error_method.value,
        "weights_n_bits": tp.weights_n_bits,
        "activation_n_bits": tp.activation_n_bits,
        "weights_method": tp.weights_quantization_method.value,
        "activation_method": tp.activation_quantization_method.value,
        "per_channel": tp.weights_per_channel_threshold,
        "weights_group_size": tp.weights_group_size,
        "quantize_activations": tp.quantize_activations,
        "weights_bias_correction": qc.weights_bias_correction,
        "l_p_value": float(qc.l_p_value),
        "z_threshold": float(qc.z_threshold),
        "min_threshold": float(qc.min_threshold),
        "mct_compat": st.compat,
    }
