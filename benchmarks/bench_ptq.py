"""Whole-PTQ timing: jq vs MCT 2.6.1 on a randomly initialised torchvision resnet18.

Representative data: 4 batches of 8 random 224x224 images (seeded). For each error method
(applied to activations; kernels keep MCT's default MSE, since MCT's per-channel KL on kernels
takes minutes per layer and MCT allows weights HMSE only with GPTQ), times
``jq.ptq.pytorch_post_training_quantization`` twice -- the first call includes JIT compilation,
the second reuses the compiled code -- and ``mct.ptq.pytorch_post_training_quantization`` once.
``--weights-hmse`` adds a jq-only run with HMSE kernels (Hessian scores from JAX autodiff).

``--compat`` adds jq's ``mct_compat=True`` runs and their ratio to the default mode.

Run: ``PYTHONPATH=.:adapters python benchmarks/bench_ptq.py [--methods mse kl hmse] [--no-mct]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import time
import warnings
from typing import Any

import torch
import torchvision

sys.path[:0] = [
    os.path.join(os.path.dirname(__file__), ".."),
    os.path.join(os.path.dirname(__file__), "..", "adapters"),
]

import jq.core  # noqa: E402
import jq.ptq  # noqa: E402


def data_gen(seed: int = 0, n_batches: int = 4, batch: int = 8):
    g = torch.Generator().manual_seed(seed)
    batches = [torch.randn(batch, 3, 224, 224, generator=g) for _ in range(n_batches)]
    return lambda: ([b] for b in batches)


def time_jq(model, gen, act: str, wgt: str = "mse", compat: bool = False) -> tuple[float, Any]:
    qc = jq.core.QuantizationConfig(
        activation_error_method=act, weights_error_method=wgt, mct_compat=compat
    )
    core = jq.core.CoreConfig(quantization_config=qc, progress=False)
    t = time.perf_counter()
    qm, info = jq.ptq.pytorch_post_training_quantization(model, gen, core_config=core)
    return time.perf_counter() - t, (qm, info)


def time_mct(model, gen, act: str) -> float:
    import model_compression_toolkit as mct

    em = mct.core.QuantizationErrorMethod
    qc = mct.core.QuantizationConfig(activation_error_method=em[act.upper()])
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        mct.ptq.pytorch_post_training_quantization(
            model, gen, core_config=mct.core.CoreConfig(quantization_config=qc)
        )
    return time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["mse", "kl", "hmse"])
    ap.add_argument("--no-mct", action="store_true")
    ap.add_argument("--weights-hmse", action="store_true")
    ap.add_argument("--compat", action="store_true", help="also time jq with mct_compat=True")
    ap.add_argument(
        "--write-docs",
        action="store_true",
        help="replace this benchmark's section of docs/benchmarks.md with its output",
    )
    args = ap.parse_args(argv)
    if args.write_docs:
        import _page  # benchmarks/_page.py: this script's section of the page

        _page.record_stdout("ptq")
    warnings.filterwarnings("ignore")
    logging.getLogger("Model Compression Toolkit").setLevel(logging.ERROR)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    gen = data_gen()
    print(f"resnet18 (random init), 4 x 8 x 3 x 224 x 224, CPU threads: {torch.get_num_threads()}")
    head = (
        f"{'method':<14} {'jq first':>9} {'jq again':>9} {'MCT':>8} {'x first':>8} {'x again':>8}"
    )
    print(head)
    print("-" * len(head))
    for method in args.methods:
        t1, (_, info) = time_jq(model, gen, method)
        t2, _ = time_jq(model, gen, method)
        tm = float("nan") if args.no_mct else time_mct(model, gen, method)
        print(
            f"{'act ' + method:<14} {t1:9.1f} {t2:9.1f} {tm:8.1f} {tm / t1:8.1f} {tm / t2:8.1f}",
            flush=True,
        )
        if args.compat:
            c1, _ = time_jq(model, gen, method, compat=True)
            c2, _ = time_jq(model, gen, method, compat=True)
            print(
                f"{'compat ' + method:<14} {c1:9.1f} {c2:9.1f} {'':>8} "
                f"{'':>8} {'':>8}  compat / default: {c1 / t1:.1f} first, {c2 / t2:.1f} again",
                flush=True,
            )
    if args.weights_hmse:
        t1, (_, info) = time_jq(model, gen, "mse", "hmse")
        t2, _ = time_jq(model, gen, "mse", "hmse")
        print(f"{'weights hmse':<14} {t1:9.1f} {t2:9.1f} {'n/a':>8}   (MCT: needs GPTQ)")
        print("  jq stages (s):", {k: round(v, 1) for k, v in info.timings.items()})
    print(
        "seconds per whole PTQ call (conversion, statistics, selection, export); "
        "x = MCT time / jq time; 'jq again' reuses compiled code."
    )


if __name__ == "__main__":
    main()
