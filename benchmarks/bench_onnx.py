"""jq's INT8 ONNX (``jq_onnx.quantize_static``) against ONNX Runtime's own ``quantize_static``.

For resnet18 and mobilenet_v2 (torchvision, random init with trained-looking batch-norm
statistics, nothing downloaded; 64x64 by default), exported with ``torch.onnx.export``: the
float file goes through

- jq: ``jq_onnx.quantize_static`` with MCT's defaults (power-of-two activation thresholds,
  MSE) and with a uniform activation grid, as ORT's, and MSE, then AUTO (the error method
  chosen per layer);
- ORT: ``onnxruntime.quantization.quantize_static`` (QDQ, int8 activations and per-channel
  int8 weights) with MinMax and with Entropy calibration;

all on the same 4 calibration batches of 4 normal images. Per file: the SQNR of the output
against the float file's on 8 other images, the integer kernels ORT runs (op types of its
optimized graph, ``ORT_ENABLE_EXTENDED``: QLinearConv / QGemm / ... against float Conv /
Gemm left), and ORT CPU latency at batch 1: the steady median of N runs after one warm-up
call, the first call of a fresh session, and the first call in a fresh process (import
onnxruntime, open the session, run once: what a user's script pays), each file measured
interleaved so load moves all alike. Sessions: CPU execution provider, default graph
optimizations (ORT_ENABLE_ALL), ``intra_op_num_threads=1`` (the box is shared).

    python benchmarks/bench_onnx.py [--size 64] [--reps 50] [--models resnet18,mobilenet_v2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

import jq.core
import jq_onnx

INTEGER_OPS = ("QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger")
FLOAT_KERNELS = ("Conv", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul")
_FRESH = """
import sys, time
t0 = time.perf_counter()
import numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2])
t1 = time.perf_counter(); s.run(None, {s.get_inputs()[0].name: x}); t2 = time.perf_counter()
print(f"{(t2 - t0) * 1e3:.1f} {(t2 - t1) * 1e3:.2f}")
"""


class Reader(CalibrationDataReader):
    """ORT's reader protocol over a list of batches."""

    def __init__(self, name: str, batches: list[np.ndarray]):
        self.name, self.batches = name, batches
        self.it = iter(batches)

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {self.name: x}

    def rewind(self) -> None:
        self.it = iter(self.batches)


def randomize_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Trained-looking batch-norm statistics (torchvision's init keeps mean 0 / var 1, and
    MobileNetV2's zero-initialized last BN per block makes outputs of order 1e-9)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def export(name: str, size: int, path: str) -> str:
    """The float model as ONNX (TorchScript exporter, opset 17, dynamic batch)."""
    torch.manual_seed(0)
    model = randomize_bn(getattr(torchvision.models, name)(weights=None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(1, 3, size, size),),
            path,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    return path


def session(path: str, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, optimized=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = level
    if optimized:
        so.optimized_model_filepath = optimized
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run(path: str, x: np.ndarray) -> np.ndarray:
    s = session(path)
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def sqnr_db(ref: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - y) ** 2)))


def kernels(path: str, folder: str) -> str:
    """``"integer ops / float kernels left"`` of ORT's optimized graph of ``path``."""
    out = os.path.join(folder, "optimized.onnx")
    session(path, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, out)
    ops = [n.op_type for n in onnx.load(out).graph.node]
    ints = sum(op in INTEGER_OPS for op in ops)
    floats = sum(op in FLOAT_KERNELS for op in ops)
    return f"{ints} / {floats}"


def latency(paths: dict[str, str], x: np.ndarray, reps: int, x_file: str) -> dict[str, tuple]:
    """Per file: (fresh-process first call total ms, its run ms, fresh-session first run ms,
    steady median ms, steady minimum ms), the steady runs interleaved across files."""
    fresh = {}
    for key, path in paths.items():
        out = subprocess.run(
            [sys.executable, "-c", _FRESH, path, x_file], capture_output=True, text=True, check=True
        )
        fresh[key] = tuple(float(v) for v in out.stdout.split())
    sessions, first = {}, {}
    for key, path in paths.items():
        s = session(path)
        feed = {s.get_inputs()[0].name: x}
        t = time.perf_counter()
        s.run(None, feed)
        first[key] = (time.perf_counter() - t) * 1e3
        sessions[key] = (s, feed)
    times: dict[str, list[float]] = {key: [] for key in paths}
    for _ in range(reps):
        for key, (s, feed) in sessions.items():
            t = time.perf_counter()
            s.run(None, feed)
            times[key].append((time.perf_counter() - t) * 1e3)
    return {k: (*fresh[k], first[k], statistics.median(times[k]), min(times[k])) for k in paths}


def quantizers(cal: list[np.ndarray]) -> dict[str, Callable[[str, str], object]]:
    quiet = jq.core.CoreConfig(progress=False)
    uniform = jq.core.TargetPlatform(activation_quantization_method="uniform")

    def jq_q(method, platform=None):
        return lambda src, dst: jq_onnx.quantize_static(
            src,
            dst,
            Reader("input", cal),
            calibrate_method=method,
            core_config=quiet,
            target_platform=platform,
        )

    def ort_q(method, pre_process=False):
        def run_ort_quantizer(src, dst):
            if pre_process:  # what ORT's warning asks for: shape inference and graph fusions
                quant_pre_process(src, dst + ".pre.onnx")
                src = dst + ".pre.onnx"
            with contextlib.redirect_stdout(io.StringIO()):  # its Entropy progress prints
                quantize_static(
                    src,
                    dst,
                    Reader("input", cal),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=method,
                )

        return run_ort_quantizer

    return {
        "jq default (pow2, MSE)": jq_q(None),
        "jq uniform, MSE": jq_q("mse", uniform),
        "jq uniform, AUTO": jq_q("auto", uniform),
        "ORT MinMax": ort_q(CalibrationMethod.MinMax),
        "ORT Entropy": ort_q(CalibrationMethod.Entropy),
        "ORT MinMax, quant_pre_process": ort_q(CalibrationMethod.MinMax, True),
        "ORT Entropy, quant_pre_process": ort_q(CalibrationMethod.Entropy, True),
    }


def bench(name: str, size: int, reps: int, folder: str) -> None:
    rng = np.random.default_rng(0)
    cal = [rng.standard_normal((4, 3, size, size)).astype(np.float32) for _ in range(4)]
    test = rng.standard_normal((8, 3, size, size)).astype(np.float32)
    fp32 = export(name, size, os.path.join(folder, f"{name}.onnx"))
    ref = run(fp32, test)
    paths, rows = {"float": fp32}, {}
    for key, quantize in quantizers(cal).items():
        dst = os.path.join(folder, f"{name}.{len(paths)}.onnx")
        t = time.perf_counter()
        quantize(fp32, dst)
        rows[key] = [time.perf_counter() - t, sqnr_db(ref, run(dst, test)), kernels(dst, folder)]
        paths[key] = dst
    x = test[:1]
    x_file = os.path.join(folder, "x.npy")
    np.save(x_file, x)
    lat = latency(paths, x, reps, x_file)
    print(f"\n{name}, {size}x{size}, batch 1; latency in ms")
    print(
        "| file | quantize s | SQNR dB | int ops / float kernels | fresh process: first call "
        "(run) | fresh session: first run | steady median / min | median / float's |"
    )
    print("|---|---|---|---|---|---|---|---|")
    f = lat["float"]
    print(
        f"| float | | | 0 / {kernels(fp32, folder).split(' / ')[1]} | {f[0]:.0f} ({f[1]:.1f}) "
        f"| {f[2]:.1f} | {f[3]:.2f} / {f[4]:.2f} | 1 |"
    )
    for key, (t_q, db, kern) in rows.items():
        p = lat[key]
        print(
            f"| {key} | {t_q:.1f} | {db:.1f} | {kern} | {p[0]:.0f} ({p[1]:.1f}) | {p[2]:.1f} "
            f"| {p[3]:.2f} / {p[4]:.2f} | {p[3] / f[3]:.2f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--models", default="resnet18,mobilenet_v2")
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="replace this benchmark's section of docs/benchmarks.md with its output",
    )
    args = p.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # ORT's quantizer warns on the root logger
    if args.write_docs:
        import _page  # benchmarks/_page.py: this script's section of the page

        _page.record_stdout("onnx")
    load = os.getloadavg()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.2f}; onnxruntime {ort.__version__} (CPU execution provider, "
        "ORT_ENABLE_ALL, intra_op_num_threads=1), torch "
        f"{torch.__version__.split('+')[0]}; {args.reps} steady runs after one warm-up"
    )
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            bench(name, args.size, args.reps, folder)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
