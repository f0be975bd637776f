"""The AUTO passes: choose each layer's error method, then check the mix on the whole model.

:func:`choose_per_layer` makes one more pass over the calibration data (```auto_eval.auto_sqnr``:
every candidate method's layer-output SQNR, in one compiled step per batch) and keeps the best
method per layer. :func:`check_mix` builds the model with the per-layer mix and with each
single method, and measures the model-output SQNR of each on the retained batches: a single
method replaces the per-layer mix only when it beats the mix by more than
:data:`AUTO_MARGIN_DB` (:func:`keep_option`), so a difference below what the calibration data
can resolve does not override the per-layer evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ..select.enums import ErrorMethod
from ..select.types import QParams
from .auto_analysis import LayerAnalysis, analyse, checked, error_curve, params_dict
from .auto_eval import AutoSums, KernelSpec, auto_sqnr, choose
from .build import (
    Built,
    act_grid,
    act_range,
    bias_correction,
    build_quantized,
    out_channels,
    quantize_kernels,
)
from .calibrate import Statistics
from .data import CalibrationData, Retained
from .placement import Plan
from .plan_searches import ActChoice, KernelChoice
from .prepare import Prepared
from .settings import Settings
from .sqnr import output_db

# A single method replaces the per-layer mix only when its model-output SQNR beats the mix's by
# more than this (dB). 0.1 dB is 2.3 % of the noise power: on the issue-14 conv net (4 batches
# of 8 at 32x32) the uniform options landed within 0.03-0.09 dB of the mix on three seeds out of
# five (noise: the per-layer figures differed by 1-4 dB, all for the mix's methods), and beat it
# by 0.17 and 0.55 dB on the other two (tests/ptq/test_auto.py).
AUTO_MARGIN_DB = 0.1

# (name, "weights" | "activation") -> what AUTO saw and chose for that quantizer
Analysis = Mapping[tuple[str, str], LayerAnalysis]


class Mix(NamedTuple):
    """The parameters AUTO settled on: kernels, activations, what each layer's choice saw, and
    the note on the model-level check."""

    kernels: KernelChoice
    acts: ActChoice
    analysis: Analysis
    note: str | None = None


def choose_per_layer(
    prep: Prepared,
    stats: Statistics,
    kernels: KernelChoice,
    acts: ActChoice,
    data: CalibrationData,
    st: Settings,
) -> Mix:
    """Per layer, the candidate method with the best layer-output SQNR.

    Needs the calibration data again: one more pass over ``data`` (``auto_eval.auto_sqnr``).
    """
    w_names, a_names = kernels.auto, acts.auto
    plan = prep.plan
    grids = []
    for i, v in enumerate(a_names):
        n, method = plan.act(v).n_bits, plan.act(v).method
        grids.append(
            [act_grid(act_range(c[i].qparams, c[i].entry, n, method), n) for c in acts.candidates]
        )
    act_grids = np.array(grids, np.float32).reshape(len(a_names), len(acts.candidates), 3)
    specs, kernel_w, kernel_b = [], [], []
    if w_names:
        specs, kernel_w, kernel_b = _kernel_candidates(prep, stats, kernels, st)
    sums = auto_sqnr(
        prep.graphs,
        prep.params,
        data.batches(progress=st.progress, desc="jq auto"),
        act_values=tuple(a_names),
        act_grids=act_grids,
        kernels=specs,
        kernel_weights=kernel_w,
        kernel_biases=kernel_b,
        fn=st.fn,
    )
    a_seen: dict[str, LayerAnalysis] = {}
    w_seen: dict[str, LayerAnalysis] = {}
    if a_names:
        acts, a_seen = _choose_activations(acts, sums, stats, plan)
    if w_names:
        kernels, w_seen = _choose_kernels(kernels, sums, prep.kernel_names)
    analysis = {(v, "activation"): a for v, a in a_seen.items()}
    analysis.update({(k, "weights"): a for k, a in w_seen.items()})
    return Mix(kernels, acts, analysis)


def _kernel_candidates(prep: Prepared, stats: Statistics, kernels: KernelChoice, st: Settings):
    """Per AUTO kernel: its :class:`KernelSpec`, each method's fake-quantized kernel
    ``(M, ...)`` and each method's (bias-corrected) bias ``(M, O)``."""
    names = list(kernels.auto)
    per_method = [quantize_kernels(prep, names, qps, st) for qps in kernels.candidates]
    specs, kernel_w, kernel_b = [], [], []
    for j, k in enumerate(names):
        node = prep.nodes[k]
        w = prep.params[k]["weight"]
        groups = node.attr("groups", 1)
        bias = prep.params[k].get("bias")
        biases = []
        for wqs in per_method:
            if st.qc.weights_bias_correction:
                biases.append(bias_correction(node.op, w, wqs[j], bias, stats.means[k], groups))
            elif bias is not None:
                biases.append(np.asarray(bias, np.float32))
            else:
                biases.append(np.zeros(out_channels(node.op, w, groups), np.float32))
        specs.append(KernelSpec(k, node.op, node.inputs[0], node.attrs))
        kernel_w.append(jnp.stack([wqs[j] for wqs in per_method]))
        kernel_b.append(np.stack(biases))
    return specs, kernel_w, kernel_b


def _choose_activations(
    acts: ActChoice, sums: AutoSums, stats: Statistics, plan: Plan
) -> tuple[ActChoice, dict[str, LayerAnalysis]]:
    """``acts`` with each AUTO value's best method, and what each value's choice saw."""
    choice, db = choose(sums.act_signal, sums.act_noise)
    methods, cands = acts.method_list, acts.candidates
    noclip = cands[methods.index(ErrorMethod.NOCLIPPING)]
    quant = dict(acts.quant)
    seen = {}
    for i, v in enumerate(acts.auto):
        c = int(choice[i])
        quant[v] = cands[c][i]
        n, method = plan.act(v).n_bits, plan.act(v).method
        params = []
        for col in cands:
            r = act_range(col[i].qparams, col[i].entry, n, method)
            params.append(
                params_dict(threshold=r.threshold, signed=r.signed)
                if r.threshold is not None
                else params_dict(range_min=r.lo, range_max=r.hi, signed=r.signed)
            )
        ref = _scale(noclip[i].qparams, noclip[i].entry)
        seen[v] = analyse(
            methods,
            db[i],
            c,
            params=params,
            curves=[_curve(col[i].qparams, ref, col[i].entry) for col in cands],
            histogram=stats.histograms[v],
        )
    return acts._replace(quant=quant), seen


def _choose_kernels(
    kernels: KernelChoice, sums: AutoSums, names: list[str]
) -> tuple[KernelChoice, dict[str, LayerAnalysis]]:
    """``kernels`` with each AUTO kernel's best method, and what each kernel's choice saw;
    ``names``: every kernel, in order."""
    choice, db = choose(sums.kernel_signal, sums.kernel_noise)
    methods, cands = kernels.method_list, kernels.candidates
    noclip = cands[methods.index(ErrorMethod.NOCLIPPING)]
    qparams, chosen = list(kernels.qparams), list(kernels.methods)
    seen = {}
    for j, k in enumerate(kernels.auto):
        c, at = int(choice[j]), names.index(k)
        qparams[at] = cands[c][j]
        chosen[at] = methods[c].value
        seen[k] = analyse(
            methods,
            db[j],
            c,
            params=[
                params_dict(threshold=q[j].threshold)
                if q[j].threshold is not None
                else params_dict(range_min=q[j].range_min, range_max=q[j].range_max)
                for q in cands
            ],
            curves=[_curve(q[j], _scale(noclip[j])) for q in cands],
        )
    return kernels._replace(qparams=qparams, methods=chosen), seen


def _uniform_options(prep: Prepared, kernels: KernelChoice, acts: ActChoice) -> list[tuple]:
    """The per-layer mix and, per AUTO candidate method, the build with that method on every
    AUTO kernel (then value): ``(label, KernelChoice, ActChoice)``."""
    options = [("per layer", kernels, acts)]
    at = [prep.kernel_names.index(k) for k in kernels.auto]
    for m, cand in zip(kernels.method_list, kernels.candidates, strict=True):
        qps, names = list(kernels.qparams), list(kernels.methods)
        for i, qp in zip(at, cand, strict=True):
            qps[i], names[i] = qp, m.value
        options.append((f"weights {m.value}", kernels._replace(qparams=qps, methods=names), acts))
    for m, col in zip(acts.method_list, acts.candidates, strict=True):
        quant = dict(acts.quant)
        quant.update(dict(zip(acts.auto, col, strict=True)))
        options.append((f"activations {m.value}", kernels, acts._replace(quant=quant)))
    return options


def check_mix(
    prep: Prepared, stats: Statistics, mix: Mix, built: Built, retained: Retained, st: Settings
) -> tuple[Mix, Built]:
    """The per-layer mix against each single candidate method, on the model's output SQNR
    over the ``retained`` batches: a single method replaces the mix only when it is better by
    more than :data:`AUTO_MARGIN_DB` (:func:`keep_option`). Each layer's analysis keeps its
    per-layer choice (``LayerAnalysis.per_layer``); ``kept`` is what the kept build uses."""
    options = _uniform_options(prep, mix.kernels, mix.acts)
    builds = [built] + [
        build_quantized(prep, stats, k.qparams, a.quant, st) for _, k, a in options[1:]
    ]
    outs = prep.float_outputs
    scores = [output_db(prep, b, retained.batches, outs) for b in builds]
    best = keep_option(scores)
    _, kernels, acts = options[best]
    labels = [o[0] for o in options]
    reason = override_reason(labels[best], scores[0], scores[best])

    def kept(name: str, kind: str) -> str:
        if kind == "weights":
            return kernels.methods[prep.kernel_names.index(name)]
        return acts.quant[name].method

    analysis = {(n, k): checked(a, kept(n, k), reason) for (n, k), a in mix.analysis.items()}
    note = check_note(labels, scores, best, len(retained.batches))
    return Mix(kernels, acts, analysis, note), builds[best]


def keep_option(scores, *, margin_db: float = AUTO_MARGIN_DB) -> int:
    """Which option the whole-model check keeps: ``0`` (the per-layer mix) unless the best
    other option's SQNR beats it by more than ``margin_db``; then that option (the first of
    equal ones).

    Args:
      scores: ``(K,)`` model-output SQNR (dB) of the per-layer mix (first) and ``K - 1``
        single-method options.
      margin_db: the margin, >= 0.

    Examples:
      >>> keep_option([47.13, 47.13, 47.16])  # within the margin: the mix stays
      0
      >>> keep_option([45.43, 45.43, 45.98])
      2
    """
    s = np.asarray(scores, np.float64)
    if s.size < 2:
        return 0
    s = np.where(np.isnan(s), -np.inf, s)
    other = 1 + int(np.argmax(s[1:]))
    return other if s[other] > s[0] + margin_db else 0


def override_reason(label: str, mix_db: float, kept_db: float) -> str:
    """Why a layer uses another method than its own best (``LayerAnalysis.reason``, shown by
    the report beside ``"kl (per layer: mse)"``).

    Example:
      >>> override_reason("activations kl", 45.43, 45.98)
      'the whole-model check kept activations kl (that method on every AUTO layer of its kind): model output SQNR 45.980 dB against 45.430 dB for the per-layer mix (+0.550 dB, more than the 0.1 dB margin)'
    """  # noqa: E501
    return (
        f"the whole-model check kept {label} (that method on every AUTO layer of its kind): "
        f"model output SQNR "
        f"{kept_db:.3f} dB against {mix_db:.3f} dB for the per-layer mix "
        f"({kept_db - mix_db:+.3f} dB, more than the {AUTO_MARGIN_DB:g} dB margin)"
    )


def check_note(labels, scores, kept: int, n_batches: int) -> str:
    """The whole-model check in words, with 3 decimals and each option's difference to the
    per-layer mix, so the deciding figures show (``QuantizationInfo.notes``)."""
    base = float(scores[0])
    parts = [f"{labels[0]} {base:.3f} dB"] + [
        f"{lab} {float(v):.3f} dB ({float(v) - base:+.3f})"
        for lab, v in zip(labels[1:], scores[1:], strict=True)
    ]
    if kept == 0:
        why = f"no single method beats it by more than {AUTO_MARGIN_DB:g} dB"
    else:
        gain = float(scores[kept]) - base
        why = f"{gain:+.3f} dB over per layer, more than the {AUTO_MARGIN_DB:g} dB margin"
    return (
        f"auto: model output SQNR on {n_batches} calibration batches: "
        + ", ".join(parts)
        + f"; kept {labels[kept]} ({why})"
    )


def _scale(qp: QParams, i: int | None = None) -> np.ndarray:
    """No-clipping scale per channel (threshold or range width) of a NOCLIPPING result."""
    if qp.threshold is not None:
        t = np.asarray(qp.threshold, np.float64)
        return (t if i is None else t[i]).ravel()
    a, b = np.asarray(qp.range_min, np.float64), np.asarray(qp.range_max, np.float64)
    return (b - a if i is None else b[i] - a[i]).ravel()


def _curve(qp: QParams, ref: np.ndarray, i: int | None = None):
    if qp.errors is None:
        return [], []
    e, c = np.asarray(qp.errors), np.asarray(qp.candidates)
    return error_curve(e if i is None else e[i], c if i is None else c[i], ref)
