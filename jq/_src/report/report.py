"""``jq.report``: a self-contained HTML page (and a markdown summary) of what PTQ chose.

The page has a summary table at the top (one row per quantized tensor: chosen error method,
SQNR of every candidate method, the best marked) and one section per layer with, when the
``quantization_info`` carries AUTO's analysis (``LayerInfo.analysis``, see
``jq/_src/ptq/auto_analysis.py``): the activation histogram with every method's threshold
marked, the error curves of every method over its candidates (normalised per method so they
share an axis), and the SQNR per method with the choice highlighted. Plots are matplotlib PNGs
embedded as base64, so the page is one file that opens anywhere. Layers without an analysis (a
single-method run) get their parameters and SQNR only.

matplotlib is imported inside :func:`report` (Agg backend), so ``import jq`` stays light.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..runtime.paths import atomic_path, check_writable

# One colour per error method (matplotlib's tab10 order), fixed so pages compare.
COLORS = {
    "mse": "#1f77b4",
    "noclipping": "#7f7f7f",
    "mae": "#ff7f0e",
    "lp": "#2ca02c",
    "kl": "#d62728",
    "hmse": "#9467bd",
    "minmax": "#8c564b",
}

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;
 max-width:1180px;color:#222;background:#fff;line-height:1.4}
h1{font-size:1.6em;margin-bottom:4px} h2{font-size:1.15em;margin:0 0 6px 0}
.meta{color:#555;font-size:.9em} .meta code{background:#f3f3f3;padding:0 3px}
table{border-collapse:collapse;font-size:.85em;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f5f5f5} td.l,th.l{text-align:left}
td.best{background:#dff3df;font-weight:600} td.chosen{font-weight:700}
section.layer{border:1px solid #e3e3e3;border-radius:6px;padding:12px 14px;margin:16px 0}
section.layer img{max-width:100%;height:auto;display:block;margin-top:6px}
.kind{display:inline-block;font-size:.75em;padding:1px 6px;border-radius:8px;
 background:#eef;color:#335;margin-left:6px;vertical-align:middle}
.note{color:#666;font-size:.85em}
a{color:#1a5fb4;text-decoration:none}
"""


def _slug(kind: str, name: str, taken: set[str]) -> str:
    base = ("w-" if kind == "weights" else "a-") + re.sub(r"[^A-Za-z0-9_-]", "_", name)
    slug, i = base, 1
    while slug in taken:
        i += 1
        slug = f"{base}-{i}"
    taken.add(slug)
    return slug


def _fmt_db(v: Any) -> str:
    if v is None:
        return ""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.2f}"


def _fmt_chosen(li: Mapping[str, Any], an: Mapping[str, Any]) -> str:
    """The error method used; with AUTO, and the whole-model check replaced the layer's own
    best, that one too (``"noclipping (per layer: mse)"``)."""
    chosen = str(an.get("chosen", li.get("error_method", "")))
    own = an.get("per_layer")
    return f"{chosen} (per layer: {own})" if own and own != chosen else chosen


def _override_reason(an: Mapping[str, Any]) -> str | None:
    """Why the whole-model check replaced the layer's own best (``None`` if it did not);
    infos saved before the reason was recorded get a pointer to the notes."""
    own = an.get("per_layer")
    if not own or own == an.get("chosen"):
        return None
    return an.get("reason") or (
        "the whole-model check replaced this layer's own best method (see the notes: "
        "'auto: model output SQNR ...')"
    )


def _fmt_param(li: Mapping[str, Any]) -> str:
    t = li.get("threshold")
    if t is not None:
        a = np.atleast_1d(np.asarray(t, np.float64))
        return f"t={a[0]:.4g}" if a.size == 1 else f"t={a.min():.3g}..{a.max():.3g} ({a.size} ch)"
    lo, hi = li.get("range_min"), li.get("range_max")
    if lo is not None and hi is not None:
        return f"[{np.min(lo):.4g}, {np.max(hi):.4g}]"
    return ""


def _as_dict(info: Any, fn: str) -> dict:
    if isinstance(info, (str, os.PathLike)):
        with open(info, encoding="utf-8") as f:
            info = json.load(f)
    if hasattr(info, "to_dict"):
        info = info.to_dict()
    if not isinstance(info, Mapping) or not isinstance(info.get("layers"), (list, tuple)):
        raise TypeError(
            f"{fn}: quantization_info must be a jq.core.QuantizationInfo, its to_dict(), or the "
            f"path of its JSON; got {type(info).__name__}"
        )
    return dict(info)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _marks(p: Mapping[str, Any]) -> list[float]:
    """Where a method's parameters clip an activation: ``t`` (and ``-t`` if signed), or the
    range ends."""
    if "threshold" in p:
        t = float(np.max(p["threshold"]))
        return [-t, t] if p.get("signed", False) else [t]
    if "range_min" in p and "range_max" in p:
        return [float(np.min(p["range_min"])), float(np.max(p["range_max"]))]
    return []


def _draw_histogram(plt, ax, an: Mapping[str, Any], methods: list[str], chosen: Any) -> None:
    """The activation histogram (symlog counts) with every method's clipping points marked."""
    hist = an["histogram"]
    e = np.asarray(hist["edges"], np.float64)
    k = np.asarray(hist["counts"], np.float64)
    ax.stairs(k, e, fill=True, color="#c8d4e3", label="_hist")
    ax.set_yscale("symlog", linthresh=1.0)
    for m in methods:
        for x in _marks(an["params"].get(m, {})):
            ax.axvline(
                x,
                color=COLORS.get(m, "k"),
                lw=2.2 if m == chosen else 1.1,
                ls="-" if m == chosen else "--",
            )
    handles = [
        plt.Line2D([], [], color=COLORS.get(m, "k"), lw=2.2 if m == chosen else 1.1, label=m)
        for m in methods
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper right", framealpha=0.8)
    ax.set_title("histogram and thresholds", fontsize=9)
    ax.set_xlabel("value", fontsize=8)
    ax.set_ylabel("count (symlog)", fontsize=8)


def _draw_curves(ax, an: Mapping[str, Any], methods: list[str], chosen: Any) -> None:
    """Every method's (normalised) error over its candidates."""
    curves = an.get("curves") or {}
    drawn = False
    for m in methods:
        xy = curves.get(m)
        if not xy or not xy[0]:
            continue
        ax.plot(
            xy[0],
            xy[1],
            color=COLORS.get(m, "k"),
            lw=2.2 if m == chosen else 1.2,
            marker="o",
            ms=2.5,
            label=m,
        )
        drawn = True
    ax.axvline(1.0, color="#999", lw=0.8, ls=":")
    xs = [x for xy in curves.values() if xy for x in xy[0] if x > 0]
    if xs and max(xs) / min(xs) > 16:  # power-of-two grids halve: a log axis spaces them evenly
        ax.set_xscale("log", base=2)
    if drawn:
        ax.legend(fontsize=7, framealpha=0.8)
    else:
        ax.text(0.5, 0.5, "no error curves recorded", ha="center", va="center", fontsize=8)
    ax.set_title("error over candidates (normalised per method)", fontsize=9)
    ax.set_xlabel("candidate / no-clipping scale", fontsize=8)
    ax.set_ylabel("error (0 = method's best, 1 = worst)", fontsize=8)


def _draw_sqnr(ax, an: Mapping[str, Any], methods: list[str], chosen: Any) -> None:
    """One bar per method: its layer-output SQNR, the chosen one outlined."""
    db = [an["sqnr_db"].get(m) for m in methods]
    vals = [float(v) if v is not None and math.isfinite(float(v)) else np.nan for v in db]
    finite = [v for v in vals if not math.isnan(v)]
    # The axis starts at 0 dB (below, if a figure is negative): a base just under the lowest
    # bar made a 1 dB difference look like a factor of several.
    base = min(finite) - 1.0 if finite and min(finite) < 0 else 0.0
    heights = [0.0 if math.isnan(v) else v - base for v in vals]
    bars = ax.bar(
        range(len(methods)),
        heights,
        bottom=base,
        color=[COLORS.get(m, "k") for m in methods],
        edgecolor=["k" if m == chosen else "none" for m in methods],
        linewidth=2,
    )
    for b, v in zip(bars, db, strict=True):
        ax.text(
            b.get_x() + b.get_width() / 2,
            b.get_y() + b.get_height(),
            _fmt_db(v),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    if finite:
        top = max(finite)
        hi = max(top, 0.0)
        ax.set_ylim(base, hi + 0.15 * (hi - base) if hi > base else base + 1.0)  # label room
    ax.set_xticks(range(len(methods)), methods, fontsize=7)
    ax.set_title(f"layer-output SQNR (dB); chosen: {chosen}", fontsize=9)


def _layer_figure(plt, li: Mapping[str, Any], an: Mapping[str, Any]):
    """One row of plots for a layer with an analysis: histogram (activations), error curves,
    SQNR per method."""
    methods = list(an["methods"])
    chosen = an.get("chosen")
    hist = an.get("histogram")
    n = 3 if hist else 2
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.0), layout="constrained")
    axes = list(np.atleast_1d(axes))
    if hist:
        _draw_histogram(plt, axes[0], an, methods, chosen)
    _draw_curves(axes[n - 2], an, methods, chosen)
    _draw_sqnr(axes[n - 1], an, methods, chosen)
    for a in axes:
        a.tick_params(labelsize=7)
    return fig


def _summary_rows(layers, slugs):
    rows = []
    for li, slug in zip(layers, slugs, strict=True):
        an = li.get("analysis") or {}
        per = an.get("sqnr_db", {})
        rows.append((li, slug, an, per))
    return rows


def _markdown(d: dict, rows, methods_all: list[str], html_name: str) -> str:
    cfg = d.get("config", {})
    out = [
        "# jq quantization report",
        "",
        f"Full report with plots: `{html_name}`.",
        "",
        f"- output SQNR: {_fmt_db(d.get('output_sqnr_db'))} dB",
        f"- activation error method: {cfg.get('activation_error_method', '?')}; weights error "
        f"method: {cfg.get('weights_error_method', '?')}",
        "",
    ]
    head = ["layer", "kind", "op", "bits", "chosen", "params", "SQNR dB"] + methods_all
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---"] * len(head)) + "|")
    for li, _, an, per in rows:
        best = max((v for v in per.values() if v is not None), default=None)
        cells = []
        for m in methods_all:
            v = per.get(m)
            s = _fmt_db(v)
            if v is not None and best is not None and v == best:
                s = f"**{s}**"
            cells.append(s)
        out.append(
            "| "
            + " | ".join(
                [
                    f"`{li['name']}`",
                    li.get("kind", ""),
                    li.get("op", ""),
                    str(li.get("n_bits", "")),
                    _fmt_chosen(li, an),
                    _fmt_param(li),
                    _fmt_db(li.get("sqnr_db")),
                ]
                + cells
            )
            + " |"
        )
    counts: dict[str, int] = {}
    for _, _, an, _ in rows:
        if an.get("chosen"):
            counts[an["chosen"]] = counts.get(an["chosen"], 0) + 1
    if counts:
        out += ["", "Chosen per layer: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    reasons = dict.fromkeys(r for _, _, an, _ in rows if (r := _override_reason(an)))
    if reasons:
        out += [
            "",
            "Why a layer's method differs from its own best (shown after `per layer`): "
            + "; ".join(reasons),
        ]
    notes = d.get("notes") or []
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def _methods_all(layers: list[dict]) -> list[str]:
    """Every error method any layer's analysis compared, in first-seen order."""
    methods_all: list[str] = []
    for li in layers:
        for m in (li.get("analysis") or {}).get("methods", []):
            if m not in methods_all:
                methods_all.append(m)
    return methods_all


def _html_head(d: dict, title: str, n_layers: int) -> list[str]:
    """The page up to the summary: head, title, output SQNR, error methods, config."""
    esc = html.escape
    cfg = d.get("config", {})
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        '<p class="meta">output SQNR (quantized vs float, calibration data): '
        f"<b>{esc(_fmt_db(d.get('output_sqnr_db')))} dB</b> &middot; activation error method "
        f"<code>{esc(str(cfg.get('activation_error_method', '?')))}</code> &middot; weights "
        f"error method <code>{esc(str(cfg.get('weights_error_method', '?')))}</code> &middot; "
        f"{n_layers} quantized tensors</p>",
    ]
    if cfg:
        parts.append(
            '<p class="meta">config: '
            + ", ".join(f"{esc(str(k))}=<code>{esc(str(v))}</code>" for k, v in cfg.items())
            + "</p>"
        )
    return parts


def _title(text: str | None) -> str:
    return f' title="{html.escape(text)}"' if text else ""


def _html_summary_row(li, slug: str, an, per, methods_all: list[str]) -> str:
    """One row of the summary table; the best SQNR among the methods is marked."""
    esc = html.escape
    finite = [v for v in per.values() if v is not None and not math.isnan(float(v))]
    best = max(finite) if finite else None
    chosen = _fmt_chosen(li, an)
    cells = [
        f'<td class="l"><a href="#{slug}">{esc(li["name"])}</a></td>',
        f'<td class="l">{esc(str(li.get("kind", "")))}</td>',
        f'<td class="l">{esc(str(li.get("op", "")))}</td>',
        f"<td>{esc(str(li.get('n_bits', '')))}</td>",
        f'<td class="chosen"{_title(_override_reason(an))}>{esc(str(chosen))}</td>',
        f"<td>{esc(_fmt_param(li))}</td>",
        f"<td>{esc(_fmt_db(li.get('sqnr_db')))}</td>",
    ]
    for m in methods_all:
        v = per.get(m)
        cls = ' class="best"' if v is not None and best is not None and v == best else ""
        cells.append(f"<td{cls}>{esc(_fmt_db(v))}</td>")
    return "<tr>" + "".join(cells) + "</tr>"


def _html_summary(d: dict, rows, methods_all: list[str]) -> list[str]:
    """The summary table (one row per quantized tensor), its note, and the run's notes."""
    esc = html.escape
    parts = ['<h2 id="summary">Summary</h2><table id="summary-table"><tr>']
    head = ["layer", "kind", "op", "bits", "chosen", "params", "SQNR dB"]
    parts.append("".join(f'<th class="l">{h}</th>' for h in head[:3]))
    parts.append("".join(f"<th>{h}</th>" for h in head[3:]))
    parts.append("".join(f"<th>{esc(m)}</th>" for m in methods_all) + "</tr>")
    for li, slug, an, per in rows:
        parts.append(_html_summary_row(li, slug, an, per, methods_all))
    parts.append("</table>")
    parts.append(
        "<p class=\"note\">SQNR per method: the layer's output with that method's parameters "
        "against the float layer, on the calibration data (green: best; ties go to the earlier "
        "method). The SQNR dB column is the layer in the final quantized model (errors of "
        "earlier layers included).</p>"
    )
    notes = d.get("notes") or []
    if notes:
        parts.append(
            '<ul class="note">' + "".join(f"<li>{esc(str(n))}</li>" for n in notes) + "</ul>"
        )
    return parts


def _html_analysis(plt, li, an, per) -> list[str]:
    """A layer's plots (one embedded PNG) and its per-method table."""
    esc = html.escape
    fig = _layer_figure(plt, li, an)
    try:
        img = _png(fig)
    finally:
        plt.close(fig)
    parts = [
        f'<img alt="plots of {esc(li["name"])}" src="data:image/png;base64,{img}">',
        '<table><tr><th class="l">method</th><th>SQNR dB</th><th>params</th></tr>',
    ]
    for m in an["methods"]:
        mark = " (chosen)" if m == an.get("chosen") else ""
        parts.append(
            f'<tr><td class="l">{esc(m)}{mark}</td>'
            f"<td>{esc(_fmt_db(per.get(m)))}</td>"
            f"<td>{esc(_fmt_param(an['params'].get(m, {})))}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _html_layer(plt, li, slug: str, an, per) -> list[str]:
    """One layer's section: heading, parameters, and its analysis when there is one."""
    esc = html.escape
    parts = [
        f'<section class="layer" id="{slug}" data-layer="{esc(li["name"])}">'
        f'<h2>{esc(li["name"])}<span class="kind">{esc(str(li.get("kind", "")))} '
        f"&middot; {esc(str(li.get('op', '')))}</span></h2>",
        f'<p class="meta">{esc(str(li.get("n_bits", "")))}-bit '
        f"{esc(str(li.get('method', '')))}, "
        f"{'signed' if li.get('signed') else 'unsigned'}, error method "
        f"<b>{esc(_fmt_chosen(li, an))}</b>, "
        f"{esc(_fmt_param(li))}, SQNR in the quantized model "
        f"{esc(_fmt_db(li.get('sqnr_db')))} dB</p>",
    ]
    reason = _override_reason(an)
    if reason:
        parts.append(
            f'<p class="note reason">why {esc(str(an.get("chosen")))}, not this layer\'s own '
            f"best {esc(str(an.get('per_layer')))}: {esc(reason)}</p>"
        )
    if an.get("methods"):
        parts += _html_analysis(plt, li, an, per)
    else:
        parts.append(
            '<p class="note">no per-method analysis recorded (run with '
            'error method "auto" to compare methods)</p>'
        )
    parts.append("</section>")
    return parts


def _pyplot(fn: str):
    """matplotlib's pyplot on the Agg backend (imported here so ``import jq`` stays light)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - matplotlib is a test dependency
        raise ImportError(f"{fn} needs matplotlib: {e}") from e
    return plt


def _markdown_path(path: str) -> str:
    """``report.html`` -> ``report.md``; a ``.md`` path gets ``.summary.md``."""
    root, ext = os.path.splitext(path)
    return root + ".md" if ext.lower() != ".md" else root + ".summary.md"


def report(quantization_info, path, *, title: str = "jq quantization report") -> tuple[str, str]:
    """Write a self-contained HTML report of a PTQ run and a markdown summary next to it.

    Args:
      quantization_info: a :class:`jq.core.QuantizationInfo`, its ``to_dict()``, or the path
        of its JSON (``info.save(path)``).
      path: the HTML file to write (``.html``); the markdown goes to the same path with
        ``.md``.
      title: the page title.

    Returns:
      ``(html_path, markdown_path)``.

    Raises:
      TypeError: ``quantization_info`` is not one of the accepted forms.
      ValueError: ``path``'s folder does not exist or is not writable (named; jq creates no
        folders, as the exporter and ``QuantizationInfo.save``); nothing is written.
      ImportError: matplotlib is not installed.

    Example:
      A hand-built info with one activation (a PTQ run returns one as its second value,
      ``qm, info = jq.ptq.pytorch_post_training_quantization(...)``):

      >>> import os, tempfile
      >>> import jq, jq.core
      >>> layer = jq.core.LayerInfo(name="relu", kind="activation", op="relu", n_bits=8,
      ...     method="power_of_two", error_method="mse", signed=False, threshold=4.0,
      ...     sqnr_db=31.5)
      >>> info = jq.core.QuantizationInfo(layers=(layer,), output_sqnr_db=30.2)
      >>> with tempfile.TemporaryDirectory() as out:
      ...     html_path, md_path = jq.report(info, os.path.join(out, "report.html"))
      ...     with open(md_path, encoding="utf-8") as f:
      ...         summary = f.read()
      >>> os.path.basename(html_path), os.path.basename(md_path)
      ('report.html', 'report.md')
      >>> print(summary)
      # jq quantization report
      <BLANKLINE>
      Full report with plots: `report.html`.
      <BLANKLINE>
      - output SQNR: 30.20 dB
      - activation error method: ?; weights error method: ?
      <BLANKLINE>
      | layer | kind | op | bits | chosen | params | SQNR dB |
      |---|---|---|---|---|---|---|
      | `relu` | activation | relu | 8 | mse | t=4 | 31.50 |
      <BLANKLINE>
    """
    fn = "jq.report"
    d = _as_dict(quantization_info, fn)
    plt = _pyplot(fn)
    path = check_writable(path, fn, "path")  # the folder rule of every jq writer
    md_path = _markdown_path(path)
    layers = [dict(li) for li in d["layers"]]
    taken: set[str] = set()
    slugs = [_slug(li.get("kind", ""), li["name"], taken) for li in layers]
    methods_all = _methods_all(layers)
    rows = _summary_rows(layers, slugs)

    parts = _html_head(d, title, len(layers)) + _html_summary(d, rows, methods_all)
    with plt.rc_context({"figure.max_open_warning": 0}):
        for li, slug, an, per in rows:
            parts += _html_layer(plt, li, slug, an, per)
    parts.append("</body></html>")
    # Both files or neither: each goes to a temporary file, renamed once both are complete.
    with atomic_path(path) as html_tmp, atomic_path(md_path) as md_tmp:
        with open(html_tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(parts))
        with open(md_tmp, "w", encoding="utf-8") as f:
            f.write(_markdown(d, rows, methods_all, os.path.basename(path)))
    return path, md_path
