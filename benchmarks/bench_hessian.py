"""Weights HMSE scores on resnet18: the previous implementation against ``weight_scores``.

Workload: torchvision resnet18 (random init, ``torch.manual_seed(0)``), converted with
``jq_torch.from_torch`` at batch 1 and batch-norm folded as the PTQ pipeline does
(``fold_batch_norm(..., include_linear=True)``); all 21 conv/linear kernels scored; 16 seeded
N(0, 1) samples of shape (1, 3, S, S) (S = 64 unless ``--size``); MCT's settings (up to 100
draws, stop rule after 10, tolerance 1e-3), seed 0.

``old`` is the implementation this module replaced, copied below (imports, progress bar and
a returned draw count aside): one ``jax.vjp`` pass per Rademacher draw, samples under
``lax.map``, draws under ``lax.while_loop``. ``new`` is ``jq._src.ptq.hessian.weight_scores``. Each
runs in a fresh process (``--worker``), old and new back to back: the first call includes
compilation, the second ("again") reuses it. Wall and CPU seconds (``time.process_time``, all
threads) are printed; on a shared machine the CPU seconds are the steadier comparison. The two
estimates use different draws, so they differ by the estimator's noise; the script reports how
much (mean |old - new| / mean old per layer) and the ratio of the per-layer totals.

Run: ``PYTHONPATH=.:adapters .venv/bin/python benchmarks/bench_hessian.py [--size 64]
[--samples 16] [--no-old-again] [--new-only]``
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path[:0] = [
    os.path.join(os.path.dirname(__file__), ".."),
    os.path.join(os.path.dirname(__file__), "..", "adapters"),
]

from jq import apply  # noqa: E402

# -- the previous implementation (jq/_src/ptq/hessian.py before the batched estimator) -------


class _State(NamedTuple):
    scores: dict  # layer -> (S, *kernel): running mean of (J^T v)^2 per sample
    prev: jax.Array  # (S, L): per-layer mean score after the last draw
    j: jax.Array  # (S,) draws done
    done: jax.Array  # (S,) stopped
    key: jax.Array  # (S, 2) per-sample keys


def _outputs_flat(graph, params, layers, ws, xs):
    p = dict(params)
    for name in layers:
        p[name] = {**params[name], "weight": ws[name]}
    out = apply(graph, p, *xs)
    outs = out if isinstance(out, tuple) else (out,)
    return jnp.concatenate([jnp.ravel(o) for o in outs])


@functools.partial(
    jax.jit, static_argnames=("graph", "layers", "chunk", "max_iter", "min_iter", "tol")
)
def _run_chunk(params, xs, state, *, graph, layers, chunk, max_iter, min_iter, tol):
    ws = {name: params[name]["weight"] for name in layers}

    def one(scores, prev, j, done, key, x):
        y, vjp_fn = jax.vjp(lambda w: _outputs_flat(graph, params, layers, w, x), ws)

        def cond(c):
            _, _, j, done, _, steps = c
            return (~done) & (steps < chunk) & (j < max_iter)

        def body(c):
            scores, prev, j, done, key, steps = c
            key, sub = jax.random.split(key)
            v = jax.random.rademacher(sub, y.shape, y.dtype)
            (g,) = vjp_fn(v)
            jf = j.astype(y.dtype)
            scores = {n: (jf * scores[n] + jnp.square(g[n])) / (jf + 1) for n in layers}
            mean = jnp.stack([jnp.mean(scores[n]) for n in layers])
            delta = jnp.max(jnp.abs(mean - prev) / (jnp.abs(mean) + 1e-6))
            done = (j > min_iter) & (delta < tol)
            return scores, mean, j + 1, done, key, steps + 1

        out = lax.while_loop(cond, body, (scores, prev, j, done, key, jnp.int32(0)))
        return out[:5]

    res = lax.map(lambda a: one(*a), (state.scores, state.prev, state.j, state.done, state.key, xs))
    return _State(*res)


def old_weight_scores(
    graph,
    params,
    samples: Sequence[np.ndarray],
    layers: Sequence[str],
    *,
    max_iter: int = 100,
    min_iter: int = 10,
    tol: float = 1e-3,
    chunk: int = 10,
    seed: int = 0,
) -> tuple[dict[str, jax.Array], np.ndarray]:
    """The previous ``weight_scores`` (no progress bar); also returns the draws per sample."""
    layers = tuple(layers)
    xs = tuple(jnp.asarray(s) for s in samples)
    n = xs[0].shape[0]
    ws = {name: params[name]["weight"] for name in layers}
    state = _State(
        scores={k: jnp.zeros((n,) + w.shape, w.dtype) for k, w in ws.items()},
        prev=jnp.zeros((n, len(layers)), jnp.float32),
        j=jnp.zeros(n, jnp.int32),
        done=jnp.zeros(n, bool),
        key=jax.random.split(jax.random.PRNGKey(seed), n),
    )
    static = dict(graph=graph, layers=layers, chunk=chunk, max_iter=max_iter)
    static.update(min_iter=min_iter, tol=float(tol))
    while True:
        state = _run_chunk(params, xs, state, **static)
        if bool(jnp.all(state.done | (state.j >= max_iter))):
            break
    return {k: jnp.mean(v, axis=0) for k, v in state.scores.items()}, np.asarray(state.j)


# -- workload -------------------------------------------------------------------------------


def setup(size: int, n: int):
    import torch
    import torchvision

    import jq_torch
    from jq._src.ptq.fold import fold_batch_norm
    from jq._src.ptq.placement import KERNEL_AXIS

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    graph, params = jq_torch.from_torch(model, (np.zeros((1, 3, size, size), np.float32),))
    g1, fparams, _ = fold_batch_norm(graph, params, include_linear=True)
    layers = tuple(nd.name for nd in g1.nodes if nd.op in KERNEL_AXIS)
    xs = [np.random.default_rng(0).normal(size=(n, 1, 3, size, size)).astype(np.float32)]
    return g1, fparams, xs, layers


def worker(impl: str, size: int, n: int, again: bool, out: str) -> None:
    t0 = time.perf_counter()
    g1, params, xs, layers = setup(size, n)
    setup_s = time.perf_counter() - t0
    if impl == "old":

        def run():
            scores, draws = old_weight_scores(g1, params, xs, layers)
            return jax.block_until_ready(scores), draws
    else:
        from jq._src.ptq.hessian import weight_scores

        def run():
            scores = weight_scores(g1, params, xs, layers, progress=False)
            return jax.block_until_ready(scores), None

    times, cpu = [], []
    load = [os.getloadavg()[0]]
    for _ in range(2 if again else 1):
        t, c = time.perf_counter(), time.process_time()
        scores, draws = run()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        load.append(os.getloadavg()[0])
    np.savez(out, **{k: np.asarray(v) for k, v in scores.items()})
    info = dict(setup=setup_s, times=times, cpu=cpu, load=load, layers=list(layers))
    if draws is not None:
        info["draws"] = [int(d) for d in draws]
    print(json.dumps(info), flush=True)


def run_worker(impl: str, args, out: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, "--size", str(args.size)]
    cmd += ["--samples", str(args.samples), "--out", out]
    if impl == "new" or not args.no_old_again:
        cmd.append("--again")
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--no-old-again", action="store_true", help="time old's first call only")
    ap.add_argument("--new-only", action="store_true")
    ap.add_argument("--worker", choices=("old", "new"))
    ap.add_argument("--again", action="store_true")
    ap.add_argument("--out")
    ap.add_argument(
        "--write-docs",
        action="store_true",
        help="replace this benchmark's section of docs/benchmarks.md with its output",
    )
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.size, args.samples, args.again, args.out)
        return
    if args.write_docs:
        import _page  # benchmarks/_page.py: this script's section of the page

        _page.record_stdout("hessian")

    print(
        f"resnet18 (random init) weights HMSE scores, {args.samples} samples of "
        f"1x3x{args.size}x{args.size}, MCT's rule (<= 100 draws)"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"jax {jax.__version__} ({jax.default_backend()}), load average at start "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for impl in ("new",) if args.new_only else ("new", "old"):
            res[impl] = run_worker(impl, args, os.path.join(tmp, impl + ".npz"))
            r = res[impl]
            t, c = r["times"], r["cpu"]
            again = f"{t[1]:7.1f} s (cpu {c[1]:7.1f} s)" if len(t) > 1 else "n/a"
            print(
                f"{impl:>4}: first call {t[0]:7.1f} s (cpu {c[0]:7.1f} s)   again {again}   "
                f"load {' -> '.join(f'{x:.1f}' for x in r['load'])}",
                flush=True,
            )
        new = res["new"]["times"]
        print(f"new: compile ~ first - again = {new[0] - new[1]:.1f} s")
        if "old" in res:
            old = res["old"]["times"]
            print(f"old draws per sample: {res['old']['draws']}")
            oc, nc = res["old"]["cpu"], res["new"]["cpu"]
            line = f"ratio old / new: first call {old[0] / new[0]:.1f}x (cpu {oc[0] / nc[0]:.1f}x)"
            if len(old) > 1:
                line += f", again {old[1] / new[1]:.1f}x (cpu {oc[1] / nc[1]:.1f}x)"
            print(line)
            a = np.load(os.path.join(tmp, "old.npz"))
            b = np.load(os.path.join(tmp, "new.npz"))
            diffs = [np.abs(a[k] - b[k]).sum() / a[k].sum() for k in res["old"]["layers"]]
            totals = [b[k].sum() / a[k].sum() for k in res["old"]["layers"]]
            print(
                "old vs new scores (different draws): mean |old - new| / mean old per layer "
                f"{min(diffs):.3f}-{max(diffs):.3f}; total new / total old "
                f"{min(totals):.3f}-{max(totals):.3f}"
            )
    print(f"load average at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
