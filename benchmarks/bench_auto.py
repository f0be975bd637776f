"""AUTO error method vs every single method: output SQNR of a randomly initialised resnet18.

Calibration data: 4 batches of 8 random 64x64 images (seed 0); evaluation data: 4 other
batches (seed 1). For each bit width and kind (activation / weights), runs
``jq.ptq.pytorch_post_training_quantization`` once per candidate error method of that kind
(``jq._src.ptq.auto_eval.candidate_methods``; the other kind keeps jq's default) and once with
``"auto"``, and reports the quantized model's output SQNR against the float model on the
evaluation data,
with the seconds each PTQ call took (the first calls include JIT compilation).

Run: ``PYTHONPATH=.:adapters python benchmarks/bench_auto.py [--bits 8 4] [--kinds weights]``
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import warnings

import torch
import torchvision

sys.path[:0] = [
    os.path.join(os.path.dirname(__file__), ".."),
    os.path.join(os.path.dirname(__file__), "..", "adapters"),
]

import jq.core  # noqa: E402
import jq.ptq  # noqa: E402
from jq._src.ptq.auto_eval import candidate_methods  # noqa: E402

KINDS = ("activation", "weights")


def batches(seed: int, n_batches: int = 4, batch: int = 8, size: int = 64) -> list[torch.Tensor]:
    """``n_batches`` seeded random image batches."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, size, size, generator=g) for _ in range(n_batches)]


def output_sqnr(model, qmodel, data: list[torch.Tensor]) -> float:
    """``10 log10(sum y^2 / sum (yq - y)^2)`` over all batches, in dB."""
    signal = noise = 0.0
    with torch.no_grad():
        for x in data:
            y = model(x).double()
            yq = qmodel(x).double()
            signal += float(torch.sum(y * y))
            noise += float(torch.sum((yq - y) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def run_ptq(model, gen, kind: str, method: str, bits: int):
    """One PTQ call; returns ``(seconds, quantized model, info)``."""
    qc = jq.core.QuantizationConfig(**{f"{kind}_error_method": method})
    core = jq.core.CoreConfig(quantization_config=qc, progress=False)
    tp = jq.core.TargetPlatform(weights_n_bits=bits, activation_n_bits=bits)
    t = time.perf_counter()
    qm, info = jq.ptq.pytorch_post_training_quantization(
        model, gen, core_config=core, target_platform_capabilities=tp
    )
    return time.perf_counter() - t, qm, info


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", nargs="+", type=int, default=[4])
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    ap.add_argument(
        "--write-docs",
        action="store_true",
        help="replace this benchmark's section of docs/benchmarks.md with its output",
    )
    args = ap.parse_args(argv)
    if args.write_docs:
        import _page  # benchmarks/_page.py: this script's section of the page

        _page.record_stdout("auto")
    warnings.filterwarnings("ignore")
    logging.getLogger("Model Compression Toolkit").setLevel(logging.ERROR)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    calib, evals = batches(0), batches(1)

    def gen():
        return ([b] for b in calib)

    print(
        "resnet18 (random init), calibration 4 x 8 x 3 x 64 x 64 (seed 0), "
        f"evaluation 4 others (seed 1), CPU threads: {torch.get_num_threads()}"
    )
    for bits in args.bits:
        for kind in args.kinds:
            methods = [m.value for m in candidate_methods(kind)] + ["auto"]
            print(f"\n== {bits} bits, {kind} error method ==", flush=True)
            head = f"{'method':<12} {'SQNR eval (dB)':>15} {'seconds':>8}"
            print(head)
            print("-" * len(head))
            results, auto_info = {}, None
            for m in methods:
                secs, qm, info = run_ptq(model, gen, kind, m, bits)
                results[m] = output_sqnr(model, qm, evals)
                if m == "auto":
                    auto_info = info
                print(f"{m:<12} {results[m]:15.2f} {secs:8.1f}", flush=True)
            best = max((m for m in methods if m != "auto"), key=results.__getitem__)
            diff = results["auto"] - results[best]
            print(
                f"AUTO {results['auto']:.2f} dB vs best single {best} {results[best]:.2f} dB "
                f"(diff {diff:+.2f} dB)"
            )
            for note in auto_info.notes:
                if note.startswith("auto"):
                    print(f"  {note}")


if __name__ == "__main__":
    main()
