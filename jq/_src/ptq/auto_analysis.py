"""What AUTO's choice saw, per layer: the typed record the pipeline keeps and the JSON form
``LayerInfo.analysis`` carries (what ``jq.report`` draws).

:func:`analyse` builds one layer's :class:`LayerAnalysis` (every candidate method's layer-output
SQNR, parameters, error curve and, for activations, the histogram); the whole-model check
returns it with the method it kept (:func:`checked`); :func:`analysis_json` writes it out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..select.enums import ErrorMethod

Curve = tuple[list[float], list[float]]  # (x, y) of :func:`error_curve`


class LayerAnalysis(NamedTuple):
    """One AUTO quantizer's evidence and choice (immutable).

    Attributes:
      methods: the ``M`` candidate methods' names (``"mse"``, ...), in preference order.
      sqnr_db: ``M`` layer-output SQNRs (dB); infinities stay floats.
      per_layer: the method the layer's own SQNR chose.
      params: ``M`` parameter dicts (:func:`params_dict`).
      curves: ``M`` error curves (:func:`error_curve`), or ``None``.
      histogram: ``(edges, counts)`` rebinned (:func:`rebin`; activations), or ``None``.
      kept: the method the whole-model check kept (``None``: no check ran).
      reason: why ``kept`` differs from ``per_layer`` (``""`` when it does not).
    """

    methods: tuple[str, ...]
    sqnr_db: tuple[float, ...]
    per_layer: str
    params: tuple[Mapping[str, Any], ...]
    curves: tuple[Curve, ...] | None = None
    histogram: Curve | None = None
    kept: str | None = None
    reason: str = ""

    @property
    def chosen(self) -> str:
        """The method the layer uses: the check's when it ran, else its own best."""
        return self.per_layer if self.kept is None else self.kept


def analyse(
    methods: Sequence[ErrorMethod | str],
    db: Any,
    choice: int,
    *,
    params: Sequence[Mapping[str, Any]],
    curves: Sequence[Curve] | None = None,
    histogram: tuple[Any, Any] | None = None,
) -> LayerAnalysis:
    """One layer's :class:`LayerAnalysis`.

    Args:
      methods: the ``M`` candidate methods, in order.
      db: ``(M,)`` SQNR (dB) of each.
      choice: index of the chosen method.
      params: ``M`` dicts ``{"threshold" | "range_min", "range_max", "signed"}`` (see
        :func:`params_dict`).
      curves: ``M`` ``(x, y)`` from :func:`error_curve` (empty for NOCLIPPING).
      histogram: ``(edges, counts)`` of an activation (rebinned with :func:`rebin`).

    Raises:
      ValueError: ``methods``, ``db`` and ``params`` of different lengths.
    """
    names = tuple(m.value if isinstance(m, ErrorMethod) else str(m) for m in methods)
    dbs = tuple(float(v) for v in np.asarray(db, np.float64).ravel())
    if len(dbs) != len(names) or len(params) != len(names):
        raise ValueError("layer_analysis: methods, db and params must have the same length")
    return LayerAnalysis(
        methods=names,
        sqnr_db=dbs,
        per_layer=names[int(choice)],
        params=tuple(params),
        curves=None if curves is None else tuple((list(x), list(y)) for x, y in curves),
        histogram=None if histogram is None else rebin(*histogram),
    )


def checked(a: LayerAnalysis, kept: str, reason: str) -> LayerAnalysis:
    """``a`` with the whole-model check's verdict: the ``kept`` method, and ``reason`` when it
    is not the layer's own choice."""
    return a._replace(kept=kept, reason=reason if kept != a.per_layer else "")


def analysis_json(a: LayerAnalysis) -> dict[str, Any]:
    """The JSON-able form of ``a`` (``LayerInfo.analysis``): ``{"methods", "sqnr_db",
    "chosen", "params", "curves", "histogram"}``, then ``"per_layer"`` once the whole-model
    check ran and ``"reason"`` where it overrode the layer (names are the methods' values)."""
    out: dict[str, Any] = {
        "methods": list(a.methods),
        "sqnr_db": dict(zip(a.methods, a.sqnr_db, strict=True)),
        "chosen": a.chosen,
        "params": dict(zip(a.methods, a.params, strict=True)),
    }
    if a.curves is not None:
        out["curves"] = {
            n: [list(x), list(y)] for n, (x, y) in zip(a.methods, a.curves, strict=True)
        }
    if a.histogram is not None:
        e, k = a.histogram
        out["histogram"] = {"edges": list(e), "counts": list(k)}
    if a.kept is not None:
        out["per_layer"] = a.per_layer
    if a.reason:
        out["reason"] = a.reason
    return out


def layer_analysis(
    methods: Sequence[ErrorMethod | str],
    db: Any,
    choice: int,
    *,
    params: Sequence[Mapping[str, Any]],
    curves: Sequence[Curve] | None = None,
    histogram: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-able record of one layer's AUTO selection (``LayerInfo.analysis``) before any
    whole-model check: :func:`analysis_json` of :func:`analyse` (same arguments).

    Returns:
      ``{"methods", "sqnr_db", "chosen", "params", "curves", "histogram"}`` (names are the
      methods' values, e.g. ``"mse"``; infinities stay floats, JSON writes them as Infinity).
    """
    a = analyse(methods, db, choice, params=params, curves=curves, histogram=histogram)
    return analysis_json(a)


def error_curve(errors: Any, candidates: Any, reference: Any, *, n_points: int = 48) -> Curve:
    """A method's error over its candidates, normalised so methods share one axis.

    ``x`` is the candidate's scale relative to the no-clipping scale of its channel (threshold,
    or range width ``max - min``), ``y`` the error min-max normalised per channel to [0, 1]
    (0 = the channel's best candidate); channels are merged by binning ``x`` and taking the
    median ``y`` per bin. Non-finite errors (rounds not run, KL on an empty range) are dropped.

    Args:
      errors: ``(..., C)`` errors (``QParams.errors``: ``(rounds, K, C)`` or ``(K, C)``).
      candidates: ``errors.shape`` thresholds, or ``errors.shape + (2,)`` ranges.
      reference: ``(C,)`` (or broadcastable) no-clipping scale per channel.
      n_points: at most this many points.

    Returns:
      ``(x, y)`` lists of floats (empty if nothing is finite).
    """
    e = np.asarray(errors, np.float64)
    c = np.asarray(candidates, np.float64)
    if c.ndim == e.ndim + 1:
        c = c[..., 1] - c[..., 0]
    if e.size == 0:
        return [], []
    n_ch = e.shape[-1]
    e = e.reshape(-1, n_ch)
    c = c.reshape(-1, n_ch)
    ref = np.broadcast_to(np.abs(np.asarray(reference, np.float64)).ravel(), (n_ch,))
    ok = np.isfinite(e) & np.isfinite(c) & (ref > 0)
    if not ok.any():
        return [], []
    lo = np.min(np.where(ok, e, np.inf), axis=0)
    hi = np.max(np.where(ok, e, -np.inf), axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.abs(c) / ref
        y = (e - lo) / span
    x, y = x[ok], y[ok]
    # Channels share candidate ratios (the grids scale with the channel): merge equal ratios;
    # more distinct ratios than n_points are binned. Host-side plotting data, not traced code.
    key = np.round(x, 9)
    uniq = np.unique(key)
    if len(uniq) <= n_points:
        idx = np.searchsorted(uniq, key)
        n = len(uniq)
    else:
        edges = np.linspace(x.min(), x.max(), n_points + 1)
        idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_points - 1)
        n = n_points
    xs, ys = [], []
    for b in range(n):
        sel = idx == b
        if sel.any():
            xs.append(float(np.median(x[sel])))
            ys.append(float(np.median(y[sel])))
    return xs, ys


def rebin(edges: Any, counts: Any, n_bins: int = 256) -> Curve:
    """Merge a histogram's bins into at most ``n_bins`` (for the report), as float lists."""
    e = np.asarray(edges, np.float64)
    k = np.asarray(counts, np.float64)
    factor = max(1, -(-len(k) // n_bins))
    pad = (-len(k)) % factor
    if pad:  # extend with empty bins of the same width
        w = e[-1] - e[-2] if len(e) > 1 else 1.0
        e = np.concatenate([e, e[-1] + w * np.arange(1, pad + 1)])
        k = np.concatenate([k, np.zeros(pad)])
    return e[::factor].tolist(), k.reshape(-1, factor).sum(1).tolist()


def params_dict(
    threshold: Any = None, range_min: Any = None, range_max: Any = None, signed: Any = None
) -> dict[str, Any]:
    """One method's parameters as JSON values (the given ones: floats, or lists per channel)."""
    out: dict[str, Any] = {}
    for key, v in (("threshold", threshold), ("range_min", range_min), ("range_max", range_max)):
        if v is not None:
            a = np.asarray(v, np.float64)
            out[key] = float(a) if a.ndim == 0 else a.ravel().tolist()
    if signed is not None:
        out["signed"] = bool(signed)
    return out
