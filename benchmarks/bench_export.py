"""Export time and onnxruntime latency: the INT8 file against the float model's ONNX.

For resnet18 and mobilenet_v2 (random init, nothing downloaded; 64x64 by default, --size to
change): quantize with jq (MCT's defaults, 2 calibration batches), export ONNX INT8 and the
float graph's ONNX (the same writer, quantizers left out), then time onnxruntime (CPU
execution provider, default optimizations) at batch 1 and 8: the first call of a fresh
session beside the steady-state median. The ratios are measured in one run, on one machine,
interleaved, so machine load moves both sides alike; the machine and its load are printed.

    python benchmarks/bench_export.py [--size 64] [--reps 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
import torchvision

import jq.core
import jq.exporter
import jq.ptq
import jq_torch
from jq._src.export.onnx_builder import OnnxOptions
from jq._src.export.onnx_model import to_onnx


def _session(path: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # one core each: the box is shared, threads would fight
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _latency(path: str, x: np.ndarray, reps: int) -> tuple[float, float]:
    """``(first call in a fresh session, steady median)`` in milliseconds."""
    s = _session(path)
    feed = {s.get_inputs()[0].name: x}
    t = time.perf_counter()
    s.run(None, feed)
    first = time.perf_counter() - t
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        s.run(None, feed)
        times.append(time.perf_counter() - t)
    return first * 1e3, statistics.median(times) * 1e3


def bench(name: str, size: int, reps: int, folder: str) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(8, 3, size, size, generator=g) for _ in range(2)]
    data = lambda: ([b] for b in batches)  # noqa: E731
    t = time.perf_counter()
    qmodel, _ = jq.ptq.pytorch_post_training_quantization(
        model, data, core_config=jq.core.CoreConfig(progress=False)
    )
    t_ptq = time.perf_counter() - t
    int8 = os.path.join(folder, f"{name}_int8.onnx")
    t = time.perf_counter()
    jq.exporter.pytorch_export_model(qmodel, int8, data, quantization_format="INT8")
    t_export = time.perf_counter() - t
    graph, params = jq_torch.from_torch(model, batches[0])
    fp32 = os.path.join(folder, f"{name}_fp32.onnx")
    proto = to_onnx(graph, params, (), [batches[0].numpy()], OnnxOptions(mode="float", opset=20))
    import onnx

    onnx.save_model(proto, fp32)
    print(f"{name} {size}x{size}: PTQ {t_ptq:.1f} s, INT8 export {t_export:.2f} s")
    print("  batch  fp32 first/steady ms  int8 first/steady ms  int8/fp32 steady  first")
    for batch in (1, 8):
        x = np.random.default_rng(batch).standard_normal((batch, 3, size, size), np.float32)
        f_first, f_ms = _latency(fp32, x, reps)
        i_first, i_ms = _latency(int8, x, reps)
        print(
            f"  {batch:5d}  {f_first:8.1f} / {f_ms:7.2f}     {i_first:8.1f} / {i_ms:7.2f}"
            f"      {i_ms / f_ms:10.2f}   {i_first / f_first:5.2f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="replace this benchmark's section of docs/benchmarks.md with its output",
    )
    args = p.parse_args()
    if args.write_docs:
        import _page  # benchmarks/_page.py: this script's section of the page

        _page.record_stdout("export")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.2f}; onnxruntime {ort.__version__}, 1 thread per session"
    )
    with tempfile.TemporaryDirectory() as folder:
        for name in ("resnet18", "mobilenet_v2"):
            bench(name, args.size, args.reps, folder)


if __name__ == "__main__":
    main()
