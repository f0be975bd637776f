"""PTQ on the models users bring (issue 14's zoo, ``tests/torch/zoo_models.py``): output SQNR
against float at 8 and 4 bits, jq beside MCT 2.6.1 where MCT runs the model, and the time of
each PTQ call (a fresh process per model and library: first calls, compilation included).

Per model: calibration on 2 seeded batches of 4 samples, evaluation on a third seeded batch of
4 that calibration never saw. ``W8A8``: the default target platform (8-bit symmetric
per-channel kernels, 8-bit power-of-two activations); ``W4A8``: 4-bit kernels, 8-bit
activations. SQNR = 10 log10(sum y^2 / sum (y - y_q)^2) over the evaluation batch's outputs.
jq runs its default mode; MCT its defaults (its own torch.fx front end), at W8A8 only.

jq's persistent compilation cache is pointed at an empty folder per process (``--warm`` adds
a second jq process on the filled folder). "jq again" is a second W8A8 call in the first
process (the steady state). ``--fused`` runs jq without the model's probe program (the per-model
fused statistics program and the quantized graph's SQNR program, the path before issue 21's
item 3), to compare both.

Run: ``PYTHONPATH=.:adapters python benchmarks/bench_zoo.py [--models gpt2 unet] [--no-mct]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "adapters")]
sys.path.insert(0, os.path.join(HERE, "..", "tests", "torch"))

CALIB_SEEDS, EVAL_SEED, BATCH = (10, 11), 99, 4


def _sqnr(ref, got) -> float:
    import numpy as np

    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    noise = float(np.sum((ref - got) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(ref**2)) / noise)


def _data(name: str):
    import zoo_models

    batches = [zoo_models.inputs(name, BATCH, s) for s in CALIB_SEEDS]
    return (lambda: (list(b) for b in batches)), zoo_models.inputs(name, BATCH, EVAL_SEED)


def _run_jq(name: str, bits: int, again: bool = False):
    import torch
    import zoo_models

    import jq.core
    import jq.ptq

    model = zoo_models.build(name)
    gen, x = _data(name)
    tp = jq.core.TargetPlatform(weights_n_bits=bits)
    core = jq.core.CoreConfig(progress=False)
    t = time.perf_counter()
    qm, info = jq.ptq.pytorch_post_training_quantization(
        model, gen, core_config=core, target_platform_capabilities=tp
    )
    seconds = time.perf_counter() - t
    out = {"seconds": seconds, "timings": dict(info.timings)}
    if again:
        t = time.perf_counter()
        qm, _ = jq.ptq.pytorch_post_training_quantization(
            model, gen, core_config=core, target_platform_capabilities=tp
        )
        out["again"] = time.perf_counter() - t
    with torch.no_grad():
        ref, got = model(*x), qm(*x)
    return {"sqnr": _sqnr(ref, got), **out}


def _run_mct(name: str):
    import model_compression_toolkit as mct
    import torch
    import zoo_models

    model = zoo_models.build(name)
    gen, x = _data(name)
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        qm, _ = mct.ptq.pytorch_post_training_quantization(model, gen)
    seconds = time.perf_counter() - t
    with torch.no_grad():
        ref, got = model(*x), qm(*x)
    if not isinstance(got, torch.Tensor):
        got = got[0]
    return {"sqnr": _sqnr(ref, got), "seconds": seconds}


def child(name: str, lib: str, w4: bool = True, fused: bool = False) -> None:
    warnings.filterwarnings("ignore")
    if fused:  # no probe program: statistics and SQNR take their own per-model programs
        from jq._src.ptq import pipeline

        pipeline.probe_spec = lambda prep: None  # type: ignore[assignment]
    try:
        if lib == "mct":
            out = {"W8A8": _run_mct(name)}
        else:
            out = {"W8A8": _run_jq(name, 8, again=True)}
            if w4:
                out["W4A8"] = _run_jq(name, 4)
    except Exception as e:  # reported in the table
        out = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
    print("RESULT " + json.dumps(out))


def _spawn(
    name: str, lib: str, cache: str, timeout: float, w4: bool = True, fused: bool = False
) -> dict:
    env = {**os.environ, "JQ_COMPILATION_CACHE_DIR": cache, "TQDM_DISABLE": "1"}
    flags = ([] if w4 else ["--no-w4"]) + (["--fused"] if fused else [])
    cmd = [sys.executable, "-u", __file__, "--child", name, lib, *flags]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}


def _cell(res: dict, cfg: str, key: str = "sqnr") -> str:
    if "error" in res:
        return "-" if res["error"] == "not run" else "fails"
    if cfg not in res:
        return "-"
    v = res[cfg][key]
    return f"{v:.1f}" if key == "sqnr" else f"{v:.0f} s"


def _split(res: dict) -> str:
    """Where the W8A8 call's time went: each stage's seconds, the compiling part in brackets."""
    if "error" in res:
        return res["error"]
    t = res["W8A8"]["timings"]
    keys = ("export", "prepare", "statistics", "weights", "activations", "build", "sqnr")
    cells = []
    for k in (k for k in keys if k in t):
        c = t.get(k + ".compile")
        cells.append(f"{k} {t[k]:.1f}" + (f" ({c:.1f})" if c else ""))
    return ", ".join(cells)


def _ratio(mct: dict, jq_res: dict | None) -> str:
    if jq_res is None or "error" in mct or "error" in jq_res:
        return "-"
    return f"{mct['W8A8']['seconds'] / jq_res['W8A8']['seconds']:.1f}x"


def main(argv=None) -> None:
    import zoo_models

    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="*", default=list(zoo_models.ZOO))
    p.add_argument("--no-mct", action="store_true")
    p.add_argument("--no-jq", action="store_true", help="MCT's column only")
    p.add_argument("--warm", action="store_true", help="a second jq process on the filled cache")
    p.add_argument("--no-w4", action="store_true", help="W8A8 only (the speed table)")
    p.add_argument("--fused", action="store_true", help="jq without the model's probe program")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="replace this benchmark's section of docs/benchmarks.md with its output",
    )
    args = p.parse_args(argv)
    if args.write_docs:
        import _page  # benchmarks/_page.py: this script's section of the page

        _page.record_stdout("zoo")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    head = "| model | jq W8A8 dB | MCT W8A8 dB | jq W4A8 dB | jq call (W8A8) | MCT call |"
    extra = " MCT / jq cold | jq again |"
    extra += " jq warm | MCT / jq warm |" if args.warm else ""
    print(head + extra + " jq stages, s (compiling) |")
    print("|" + "---|" * (head.count("|") - 1 + extra.count("|") + 1))
    for name in args.models:
        with tempfile.TemporaryDirectory() as cache:
            jq_res = (
                {"error": "not run"}
                if args.no_jq
                else _spawn(name, "jq", cache, args.timeout, not args.no_w4, args.fused)
            )
            warm = None
            if args.warm:
                warm = _spawn(name, "jq", cache, args.timeout, not args.no_w4, args.fused)
        mct_res = {"error": "not run"} if args.no_mct else _spawn(name, "mct", "", args.timeout)
        row = [
            name,
            _cell(jq_res, "W8A8"),
            _cell(mct_res, "W8A8"),
            _cell(jq_res, "W4A8"),
            _cell(jq_res, "W8A8", "seconds"),
            _cell(mct_res, "W8A8", "seconds"),
        ]
        row += [_ratio(mct_res, jq_res), _cell(jq_res, "W8A8", "again")]
        if warm is not None:
            row += [_cell(warm, "W8A8", "seconds"), _ratio(mct_res, warm)]
        print("| " + " | ".join(row) + f" | {_split(jq_res)} |", flush=True)
        if mct_res.get("error", "not run") != "not run":
            print(f"  MCT on {name}: {mct_res['error']}", flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        flags = sys.argv[4:]
        child(sys.argv[2], sys.argv[3], w4="--no-w4" not in flags, fused="--fused" in flags)
    else:
        main()
