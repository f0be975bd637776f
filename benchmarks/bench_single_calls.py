"""Single functional-API calls as a parity suite makes them: one call per case, every case new.

Issue 21's workload: ``N`` weight cases drawn at random (conv kernels with 4-300 output and
1/3/16/64/128 input channels, 1x1 and 3x3; every method x error method but KL x n_bits 2..8 x
per-channel on/off), one ``jq.weights_qparams`` call each, in a fresh process, against MCT
2.6.1's ``*_selection_tensor`` on the same cases (``tests/select/mct_ref.py``). jq runs in the
default mode and with ``mct_compat=True``, each with an empty persistent cache ("cold") and
then with the cache that run left ("warm"), and a second pass inside the warm process
("again": the steady state). Prints a table of seconds and ratios MCT / jq (above 1: jq is
faster) and the machine's load.

Run: ``python benchmarks/bench_single_calls.py [--cases 200] [--seed 0]``.
Times are of the calls themselves (imports excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("power_of_two", "symmetric", "uniform")
ERRORS = ("noclipping", "mse", "mae", "lp", "hmse")


def cases(n: int, seed: int) -> list[dict]:
    """``n`` weight cases (tensor and options), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        o = int(rng.integers(4, 301))
        i, k = int(rng.choice((1, 3, 16, 64, 128))), int(rng.choice((1, 3)))
        w = rng.standard_normal((o, i, k, k)).astype(np.float32)
        err = str(rng.choice(ERRORS))
        h = np.abs(rng.standard_normal(w.shape)).astype(np.float32) if err == "hmse" else None
        out.append(
            dict(
                tensor=w,
                method=str(rng.choice(METHODS)),
                error_method=err,
                n_bits=int(rng.integers(2, 9)),
                per_channel=bool(rng.integers(2)),
                hessian=h,
            )
        )
    return out


def child(lib: str, n: int, seed: int) -> dict:
    todo = cases(n, seed)
    if lib == "mct":
        sys.path.insert(0, str(ROOT / "tests" / "select"))
        import mct_ref

        t = time.perf_counter()
        for c in todo:
            mct_ref.weights(c["tensor"], **{k: v for k, v in c.items() if k != "tensor"})
        return {"first": time.perf_counter() - t}
    import jq

    compat = lib == "compat"
    out = {}
    for name in ("first", "again"):
        t = time.perf_counter()
        for c in todo:
            jq.weights_qparams(
                c["tensor"], mct_compat=compat, **{k: v for k, v in c.items() if k != "tensor"}
            )
        out[name] = time.perf_counter() - t
    return out


def run_child(args: list[str], cache: str | None) -> dict:
    env = dict(os.environ)
    if cache is None:
        env["JQ_COMPILATION_CACHE"] = "0"
    else:
        env["JQ_COMPILATION_CACHE_DIR"] = cache
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "adapters")])
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument(
        "--write-docs",
        action="store_true",
        help="replace this benchmark's section of docs/benchmarks.md with its output",
    )
    args = ap.parse_args(argv)
    if args.child:
        lib, n, seed = args.child
        print(json.dumps(child(lib, int(n), int(seed))))
        return
    if args.write_docs:
        import _page  # benchmarks/_page.py: this script's section of the page

        _page.record_stdout("single-calls")
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}; {args.cases} cases, seed {args.seed}"
    )
    mct = run_child(["mct", str(args.cases), str(args.seed)], None)["first"]
    print("| jq mode | cold s | warm s | again s | MCT s | MCT/cold | MCT/warm |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("default", "compat"):
        with tempfile.TemporaryDirectory() as cache:
            run = [mode, str(args.cases), str(args.seed)]
            cold = run_child(run, cache)
            warm = run_child(run, cache)
        print(
            f"| {mode} | {cold['first']:.1f} | {warm['first']:.1f} | {warm['again']:.2f} | "
            f"{mct:.1f} | {mct / cold['first']:.2f} | {mct / warm['first']:.2f} |",
            flush=True,
        )
    print(f"# load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
