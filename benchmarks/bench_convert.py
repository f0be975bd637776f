"""Conversion and forward speed of the jq_torch zoo on the CPU.

For each model: ``from_torch`` time, torch eager forward, jitted ``jq.apply`` forward (after
compilation; compile time separately) and the ratio jq/torch. Models are randomly initialised
(nothing downloads). Target (issue 3): jq within 1.5x of torch on resnet18 and mobilenet_v2 at
batch 8, 224x224.

    PYTHONPATH=.:adapters python benchmarks/bench_convert.py                 # whole zoo, batch 8
    PYTHONPATH=.:adapters python benchmarks/bench_convert.py --models resnet18 mobilenet_v2
    PYTHONPATH=.:adapters python benchmarks/bench_convert.py --batch 2 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
import torch
import torchvision

import jq_torch
from jq import apply

VISION = [
    "resnet18",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "regnet_x_400mf",
    "squeezenet1_1",
    "convnext_tiny",
    "vit_b_16",
]


def _encoder():
    layer = torch.nn.TransformerEncoderLayer(256, 8, 1024, batch_first=True)
    return torch.nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)


def build(name: str, batch: int, size: int):
    torch.manual_seed(0)
    if name == "transformer_encoder":
        return _encoder().eval(), torch.randn(batch, 128, 256)
    model = getattr(torchvision.models, name)(weights=None).eval()
    return model, torch.randn(batch, 3, size, size)


def _interleaved_best(fns, repeat: int) -> list[float]:
    """Best-of-``repeat`` time of each function, runs interleaved so that load from other
    processes hits all of them alike (the minimum is the least disturbed run)."""
    for fn in fns:
        fn()  # warm up
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def bench(name: str, batch: int, size: int, repeat: int) -> dict:
    model, x = build(name, batch, size)
    t = time.perf_counter()
    graph, params = jq_torch.from_torch(model, x)
    convert = time.perf_counter() - t

    xn = x.numpy()
    f = jax.jit(apply, static_argnums=0)
    t = time.perf_counter()
    compiled = f.lower(graph, params, xn).compile()
    compile_s = time.perf_counter() - t

    def torch_fwd():
        with torch.inference_mode():
            return model(x)

    def jax_fwd():
        return jax.block_until_ready(compiled(params, xn))

    t_torch, t_jax = _interleaved_best([torch_fwd, jax_fwd], repeat)
    diff = float(np.max(np.abs(np.asarray(jax_fwd()) - torch_fwd().numpy())))
    return dict(
        model=name,
        nodes=len(graph.nodes),
        convert=convert,
        compile=compile_s,
        torch=t_torch * 1e3,
        jax=t_jax * 1e3,
        ratio=t_jax / t_torch,
        diff=diff,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=VISION + ["transformer_encoder"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224, help="image size for the CNNs")
    parser.add_argument("--repeat", type=int, default=10, help="timed forwards (best of)")
    parser.add_argument(
        "--single-thread", action="store_true", help="one thread for torch and for XLA"
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="replace this benchmark's section of docs/benchmarks.md with its output",
    )
    args = parser.parse_args()
    if args.write_docs:
        import _page  # benchmarks/_page.py: this script's section of the page

        _page.record_stdout("convert")
    if args.single_thread:  # before the first JAX computation initialises the CPU backend
        torch.set_num_threads(1)
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false"

    print(
        f"CPU, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}, "
        f"jax {jax.__version__}, torch {torch.__version__}, batch {args.batch}, "
        f"best of {args.repeat} interleaved runs"
    )
    header = (
        f"{'model':<20} {'nodes':>5} {'convert s':>9} {'compile s':>9} "
        f"{'torch ms':>9} {'jq jit ms':>9} {'jq/torch':>8} {'max diff':>9}"
    )
    print(header)
    print("-" * len(header))
    for name in args.models:
        size = 224 if name == "vit_b_16" else args.size
        r = bench(name, args.batch, size, args.repeat)
        print(
            f"{r['model']:<20} {r['nodes']:>5} {r['convert']:>9.2f} {r['compile']:>9.2f} "
            f"{r['torch']:>9.1f} {r['jax']:>9.1f} {r['ratio']:>8.2f} {r['diff']:>9.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
