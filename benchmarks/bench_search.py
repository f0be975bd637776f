"""Threshold-search speed: jq (default and MCT-compat mode) against MCT 2.6.1, side by side.

Two workloads (issue 2, item 5), every method x error method:

(a) per-channel weight search over all 21 conv/linear weights of torchvision's resnet18
    (11.7 M parameters, 5800 output channels; seeded kaiming-normal tensors built from the
    shapes, listed in ``tests/select/cases.py``), 8 bits, channel axis 0;
(b) activation search over 50 histograms of 2048 bins of varied activations (relu, gelu, silu,
    tanh, sigmoid, gaussian, laplace, student-t, outliers, positive), 8 bits, signedness from
    the data (MCT's pipeline rule) passed explicitly to both.

jq runs through ``jq.weights_qparams_batch`` / ``jq.activation_qparams_batch``. Times are wall
clock with ``jax.block_until_ready``: the first call (compilation + one run) is reported
separately; steady-state is the best of ``--repeats`` calls after it. MCT cells whose full run
would exceed ``--mct-budget`` seconds are timed on a subset (the first k channels of every
layer, or the first k histograms) and extrapolated linearly by the channel / histogram count;
the table says so ("extrap. k/N"). MCT's per-channel KL loops over channels, so that
extrapolation is accurate there; for vectorised MCT cells it slightly overstates MCT.

LP uses p = 3 (p = 2 is MSE bit for bit). HMSE uses random positive per-element scores for
weights; for activations HMSE is the MSE formula on a Hessian-weighted histogram, timed on the
same histograms.

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_search.py            # full table
    PYTHONPATH=. .venv/bin/python benchmarks/bench_search.py --quick    # tiny smoke version
    ... --methods symmetric,uniform --error-methods mse,kl --part weights
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "select"))
import cases  # noqa: E402

METHODS = ("power_of_two", "symmetric", "uniform")
ERRORS = ("noclipping", "mse", "mae", "lp", "kl", "hmse")
LP_P = 3.0
N_BITS = 8

# Targets (issue 2, item 5), default mode vs MCT.
W_TARGET = {"mse": 10, "mae": 10, "lp": 10, "kl": 1000}
A_TARGET = {"noclipping": 100, "mse": 100, "mae": 100, "lp": 100, "hmse": 100, "kl": 300}


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        n_aff = len(os.sched_getaffinity(0))
    except AttributeError:
        n_aff = os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (
        f"CPU: {model}, {os.cpu_count()} logical cores ({n_aff} usable); "
        f"load average at start {', '.join(f'{v:.2f}' for v in load)}; "
        f"Python {platform.python_version()}, NumPy {np.__version__}"
    )


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def time_jq(fn, repeats: int) -> tuple[float, float, object]:
    """(first call seconds, best steady-state seconds, result)."""
    import jax

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    steady = best_of(lambda: jax.block_until_ready(fn()), repeats)
    return first, steady, out


def _fmt_s(s: float) -> str:
    if s != s:
        return "-"
    if s >= 100:
        return f"{s:.0f}"
    if s >= 1:
        return f"{s:.2f}"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def _fmt_x(r: float) -> str:
    if r != r:
        return "-"
    return f"{r:,.0f}x" if r >= 10 else f"{r:.2f}x"


# ----------------------------------------------------------------------------- MCT timing


def mct_time(
    run_subset, run_full, n_total: int, subset_k: int, n_subset: int, budget: float, repeats: int
):
    """Time MCT: a pilot on the subset, then the full run if the extrapolation fits ``budget``.

    Returns (seconds for the full workload, note, full result or None).
    """
    t0 = time.perf_counter()
    run_subset()
    pilot = time.perf_counter() - t0
    estimate = pilot * n_total / max(n_subset, 1)
    if n_subset >= n_total or estimate <= budget:
        res = {}

        def full():
            res["out"] = run_full()

        reps = repeats if estimate * repeats <= budget else 1
        return best_of(full, reps), "measured", res.get("out")
    if pilot < 2.0 and repeats > 1:
        pilot = min(pilot, best_of(run_subset, repeats - 1))
    return pilot * n_total / n_subset, f"extrap. {n_subset}/{n_total}", None


# ----------------------------------------------------------------------------- weights


def bench_weights(args, methods, errors) -> list[dict]:
    import jq

    tensors = cases.resnet18_weights()
    if args.quick:
        tensors = tensors[:4]
    rng = np.random.default_rng(1)
    hessians = [np.exp(rng.normal(0.0, 1.0, t.shape)).astype(np.float32) for t in tensors]
    n_ch = sum(t.shape[0] for t in tensors)
    rows = []
    for method in methods:
        for err in errors:
            p = LP_P if err == "lp" else 2.0
            row = dict(part="weights", method=method, error=err)
            kw = dict(n_bits=N_BITS, method=method, error_method=err, per_channel=True, p=p)
            for mode, compat in (("default", False), ("compat", True)):

                def call(compat=compat, kw=kw, err=err):
                    return jq.weights_qparams_batch(
                        tensors,
                        hessians=hessians if err == "hmse" else None,
                        mct_compat=compat,
                        **kw,
                    )

                first, steady, out = time_jq(call, args.repeats)
                row[f"{mode}_first"], row[f"{mode}_s"] = first, steady
                row[f"{mode}_out"] = out
            if not args.no_mct:
                import mct_ref

                k = 1 if err == "kl" else args.subset_channels

                def run(ts, hs, method=method, err=err, p=p):
                    return [
                        mct_ref.weights(
                            t,
                            method=method,
                            error_method=err,
                            n_bits=N_BITS,
                            per_channel=True,
                            channel_axis=0,
                            p=p,
                            hessian=h,
                        )
                        for t, h in zip(ts, hs, strict=True)
                    ]

                sub_t = [t[:k] for t in tensors]
                sub_h = [h[:k] for h in hessians]
                n_sub = sum(t.shape[0] for t in sub_t)
                secs, note, ref = mct_time(
                    lambda sub_t=sub_t, sub_h=sub_h, run=run: run(sub_t, sub_h),
                    lambda run=run: run(tensors, hessians),
                    n_ch,
                    k,
                    n_sub,
                    args.mct_budget,
                    args.repeats,
                )
                row["mct_s"], row["mct_note"] = secs, note
                row["agree"] = _agree_weights(method, ref, row["compat_out"]) if ref else "-"
            rows.append(row)
            _progress(row)
    return rows


def _agree_weights(method, ref, got) -> str:
    keys = ("range_min", "range_max") if method == "uniform" else ("threshold",)
    n = ok = 0
    for r, g in zip(ref, got, strict=True):
        good = None
        for key in keys:
            a = np.ravel(r[key])
            b = np.ravel(np.asarray(getattr(g, key), dtype=np.float64))
            eq = a == b if method == "power_of_two" else np.isclose(b, a, rtol=1e-6, atol=1e-12)
            good = eq if good is None else good & eq
        n += good.size
        ok += int(good.sum())
    return f"{ok}/{n}"


# ----------------------------------------------------------------------------- activations


def bench_activations(args, methods, errors) -> list[dict]:
    import jq

    n_hist = 5 if args.quick else 50
    bins, counts = cases.realistic_activation_histograms(n_hist, n_bins=2048)
    signed = np.array([cases.mct_auto_signed(b, c) for b, c in zip(bins, counts, strict=True)])
    rows = []
    for method in methods:
        for err in errors:
            p = LP_P if err == "lp" else 2.0
            row = dict(part="activations", method=method, error=err)
            kw = dict(n_bits=N_BITS, method=method, error_method=err, p=p, is_signed=signed)
            for mode, compat in (("default", False), ("compat", True)):

                def call(compat=compat, kw=kw):
                    return jq.activation_qparams_batch(bins, counts, mct_compat=compat, **kw)

                first, steady, out = time_jq(call, args.repeats)
                row[f"{mode}_first"], row[f"{mode}_s"] = first, steady
                row[f"{mode}_out"] = out
            if not args.no_mct:
                import mct_ref

                def run(idx, method=method, err=err, p=p):
                    return [
                        mct_ref.activations(
                            bins[i],
                            counts[i],
                            method=method,
                            error_method=err,
                            n_bits=N_BITS,
                            p=p,
                            is_signed=bool(signed[i]),
                        )
                        for i in idx
                    ]

                k = min(args.subset_hists, n_hist)
                secs, note, ref = mct_time(
                    lambda run=run, k=k: run(range(k)),
                    lambda run=run: run(range(n_hist)),
                    n_hist,
                    k,
                    k,
                    args.mct_budget,
                    args.repeats,
                )
                row["mct_s"], row["mct_note"] = secs, note
                row["agree"] = _agree_acts(method, ref, row["compat_out"]) if ref else "-"
            rows.append(row)
            _progress(row)
    return rows


def _agree_acts(method, ref, got) -> str:
    keys = ("range_min", "range_max") if method == "uniform" else ("threshold",)
    good = np.ones(len(ref), bool)
    for key in keys:
        a = np.array([float(np.ravel(r[key])[0]) for r in ref])
        b = np.asarray(getattr(got, key), dtype=np.float64).reshape(-1)
        eq = a == b if method == "power_of_two" else np.isclose(b, a, rtol=1e-6, atol=1e-12)
        good &= eq
    good &= np.array([r["signed"] for r in ref]) == np.asarray(got.signed).reshape(-1)
    return f"{int(good.sum())}/{good.size}"


# ----------------------------------------------------------------------------- report


def _progress(row) -> None:
    mct = f"MCT {_fmt_s(row.get('mct_s', float('nan')))} ({row.get('mct_note', '-')})"
    print(
        f"  {row['part']:11s} {row['method']:12s} {row['error']:10s} {mct}; "
        f"jq {_fmt_s(row['default_s'])} / compat {_fmt_s(row['compat_s'])}; "
        f"first call {_fmt_s(row['default_first'])} / {_fmt_s(row['compat_first'])}",
        file=sys.stderr,
        flush=True,
    )


def table(rows: list[dict], targets: dict, title: str) -> str:
    out = [
        f"#### {title}",
        "",
        "| method | error | MCT | jq default | MCT / jq | jq compat | MCT / compat | "
        "compat / default | first call default / compat | target | compat = MCT |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mct = r.get("mct_s", float("nan"))
        ratio = mct / r["default_s"]
        ratio_c = mct / r["compat_s"]
        cd = r["compat_s"] / r["default_s"]
        tgt = targets.get(r["error"])
        if r["part"] == "weights" and r["error"] in ("noclipping", "hmse"):
            tgt = None  # no stated target
        flag = "-"
        if tgt is not None and ratio == ratio:
            flag = f">= {tgt}x {'ok' if ratio >= tgt else 'MISSED'}"
        if cd > 3:
            flag += "; compat > 3x default"
        note = r.get("mct_note", "-")
        mct_txt = _fmt_s(mct) + ("" if note in ("measured", "-") else f" ({note})")
        out.append(
            f"| {r['method']} | {r['error']} | {mct_txt} | {_fmt_s(r['default_s'])} | "
            f"{_fmt_x(ratio)} | {_fmt_s(r['compat_s'])} | {_fmt_x(ratio_c)} | {cd:.2f} | "
            f"{_fmt_s(r['default_first'])} / {_fmt_s(r['compat_first'])} | {flag} | "
            f"{r.get('agree', '-')} |"
        )
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="jq vs MCT 2.6.1 threshold-search benchmark")
    ap.add_argument("--quick", action="store_true", help="tiny version (4 layers, 5 histograms)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--error-methods", default=",".join(ERRORS))
    ap.add_argument("--part", choices=("weights", "activations", "both"), default="both")
    ap.add_argument("--repeats", type=int, default=3, help="best of N after the first call")
    ap.add_argument(
        "--mct-budget",
        type=float,
        default=20.0,
        help="seconds: MCT cells estimated slower than this are extrapolated from a subset",
    )
    ap.add_argument("--subset-channels", type=int, default=4, help="MCT pilot: channels/layer")
    ap.add_argument("--subset-hists", type=int, default=3, help="MCT pilot: histograms")
    ap.add_argument("--no-mct", action="store_true", help="time jq only")
    ap.add_argument(
        "--write-docs",
        action="store_true",
        help="replace this benchmark's section of docs/benchmarks.md with its output",
    )
    args = ap.parse_args(argv)
    if args.write_docs:
        import _page  # benchmarks/_page.py: this script's section of the page

        _page.record_stdout("search")
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.mct_budget = min(args.mct_budget, 3.0)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    errors = [e.strip() for e in args.error_methods.split(",") if e.strip()]
    for m in methods:
        if m not in METHODS:
            ap.error(f"--methods: unknown {m!r}; expected {', '.join(METHODS)}")
    for e in errors:
        if e not in ERRORS:
            ap.error(f"--error-methods: unknown {e!r}; expected {', '.join(ERRORS)}")

    import jax

    header = [
        "### Threshold-search benchmark: jq vs MCT 2.6.1",
        "",
        f"Machine: {machine()}",
        f"JAX {jax.__version__} on {jax.devices()[0].platform}"
        + ("" if args.no_mct else f"; MCT {_mct_version()}"),
        f"Command: {' '.join([Path(sys.argv[0]).name] + (argv or sys.argv[1:]))}",
        f"Steady state = best of {args.repeats} after the first call; first call = compile + "
        "one run. Seconds unless marked.",
        "",
    ]
    print("\n".join(header), flush=True)
    t0 = time.perf_counter()
    if args.part in ("weights", "both"):
        rows = bench_weights(args, methods, errors)
        n = "4 layers of resnet18" if args.quick else "all 21 resnet18 conv/linear weights"
        print(table(rows, W_TARGET, f"(a) per-channel weight search, {n}, 8 bits"))
        print(flush=True)
    if args.part in ("activations", "both"):
        rows = bench_activations(args, methods, errors)
        n = 5 if args.quick else 50
        print(table(rows, A_TARGET, f"(b) activation search, {n} histograms x 2048 bins, 8 bits"))
        print()
    print(f"(benchmark wall time {time.perf_counter() - t0:.0f} s)")
    return 0


def _mct_version() -> str:
    try:
        from importlib.metadata import version

        return version("model-compression-toolkit")
    except Exception:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
