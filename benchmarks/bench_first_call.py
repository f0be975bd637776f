"""First calls as users meet them: each run in a fresh process, with an empty and a warm cache.

Two parts, each printed as a table of seconds and ratios (MCT time / jq time), all measured in
this one run on this machine (its load is printed):

* ``api``: ``jq.weights_qparams`` once for each of resnet18's 21 kernels (torchvision, random
  init), per quantization method x error method, against MCT 2.6.1's same 21
  ``*_selection_tensor`` calls. jq runs twice in fresh processes: with an empty persistent
  compilation cache, then with the cache the first run left (warm); "again" is a second pass
  inside the warm process (steady state).
* ``ptq``: ``jq.ptq.pytorch_post_training_quantization`` on resnet18 (random init, 4 batches
  of 8 x 3 x 224 x 224) and on the digits CNN of ``examples/digits_ptq.py``, fresh process, empty
  and warm cache, then a second call in the warm process; MCT's PTQ call in a fresh process.
  jq's per-stage timings (compile and run split) are printed for the empty-cache run.

Run: ``python benchmarks/bench_first_call.py [--part api ptq] [--errors mse mae lp]``.
Times are of the calls themselves (imports excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("power_of_two", "symmetric", "uniform")


def _kernels():
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    return [p.detach().numpy() for p in model.parameters() if p.ndim in (2, 4)]


def child_api(lib: str, method: str, err: str) -> dict:
    ks = _kernels()
    if lib == "mct":
        sys.path.insert(0, str(ROOT / "tests" / "select"))
        import mct_ref

        t = time.perf_counter()
        for k in ks:
            mct_ref.weights(k, method=method, error_method=err)
        return {"first": time.perf_counter() - t}
    import jq

    out = {}
    for name in ("first", "again"):
        t = time.perf_counter()
        for k in ks:
            jq.weights_qparams(k, method=method, error_method=err)
        out[name] = time.perf_counter() - t
    return out


def _resnet_gen():
    import torch

    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 3, 224, 224, generator=g) for _ in range(4)]
    return lambda: ([b] for b in batches)


def _digits():
    sys.path.insert(0, str(ROOT / "examples"))
    import digits_ptq

    xtr, ytr, _, _ = digits_ptq.load_data()
    return digits_ptq.train(xtr, ytr), digits_ptq.representative(xtr[:256])


def child_ptq(lib: str, model_name: str) -> dict:
    import logging
    import warnings

    import torch
    import torchvision

    warnings.filterwarnings("ignore")
    logging.getLogger("Model Compression Toolkit").setLevel(logging.ERROR)
    torch.manual_seed(0)
    if model_name == "resnet18":
        model, gen = torchvision.models.resnet18(weights=None).eval(), _resnet_gen()
    else:
        model, gen = _digits()
    if lib == "mct":
        import contextlib
        import io

        import model_compression_toolkit as mct

        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            mct.ptq.pytorch_post_training_quantization(model, gen)
        return {"first": time.perf_counter() - t}
    sys.path.insert(0, str(ROOT / "adapters"))
    import jq.core
    import jq.ptq

    core = jq.core.CoreConfig(progress=False)
    out = {}
    for name in ("first", "again"):
        t = time.perf_counter()
        _, info = jq.ptq.pytorch_post_training_quantization(model, gen, core_config=core)
        out[name] = time.perf_counter() - t
        out.setdefault("timings", {k: round(v, 2) for k, v in info.timings.items()})
    return out


def run_child(args: list[str], cache: str | None) -> dict:
    env = dict(os.environ)
    if cache is None:
        env["JQ_COMPILATION_CACHE"] = "0"
    else:
        env["JQ_COMPILATION_CACHE_DIR"] = cache
    env["TQDM_DISABLE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "adapters")])
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _row(label: str, cold: dict, warm: dict, mct: dict) -> str:
    m = mct["first"]
    return (
        f"{label:<24} {cold['first']:8.2f} {warm['first']:8.2f} {warm['again']:8.2f} {m:8.2f}"
        f" {m / cold['first']:8.1f}x {m / warm['first']:7.1f}x {m / warm['again']:7.1f}x"
    )


HEAD = (
    f"{'case':<24} {'jq cold':>8} {'jq warm':>8} {'jq again':>8} {'MCT':>8}"
    f" {'x cold':>9} {'x warm':>8} {'x again':>8}"
)


def part(cases: list[tuple[str, list[str]]]) -> None:
    print(HEAD)
    print("-" * len(HEAD))
    for label, args in cases:
        with tempfile.TemporaryDirectory(prefix="jq-bench-xla-") as cache:
            cold = run_child(["jq", *args], cache)
            warm = run_child(["jq", *args], cache)
        mct = run_child(["mct", *args], None)
        print(_row(label, cold, warm, mct), flush=True)
        if "timings" in cold:
            print(f"    jq stages, empty cache (s): {cold['timings']}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", nargs="+", default=["api", "ptq"], choices=["api", "ptq"])
    ap.add_argument("--errors", nargs="+", default=["mse", "mae", "lp"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--child", nargs="+")
    ap.add_argument(
        "--write-docs",
        action="store_true",
        help="replace this benchmark's section of docs/benchmarks.md with its output",
    )
    args = ap.parse_args(argv)
    if args.child:
        lib, kind, *rest = args.child
        res = child_api(lib, *rest) if kind == "api" else child_ptq(lib, *rest)
        print(json.dumps(res))
        return
    if args.write_docs:
        import _page  # benchmarks/_page.py: this script's section of the page

        _page.record_stdout("first-call")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} (1 / 5 min)")
    print("seconds per call sequence; x = MCT / jq; cold: fresh process, empty compilation cache;")
    print("warm: fresh process, the cache the cold run left; again: same calls in the warm process")
    if "api" in args.part:
        print("\nfunctional API: weights_qparams on resnet18's 21 kernels")
        part([(f"{m} {e}", ["api", m, e]) for m in args.methods for e in args.errors])
    if "ptq" in args.part:
        print("\nPTQ call (default config)")
        part([("resnet18 224px 4x8", ["ptq", "resnet18"]), ("digits CNN", ["ptq", "digits"])])


if __name__ == "__main__":
    main()
