"""Calibration on 1, 2, 4 and 8 devices, and on 2 processes: time and thresholds.

Each configuration runs in a fresh process (the device count is fixed when JAX starts): forced
CPU devices (``--xla_force_host_platform_device_count``) in one process, or 2 processes x 2
devices over ``jax.distributed`` (gloo on 127.0.0.1), each process yielding half of every batch.
The model is a randomly initialised torchvision resnet18 at 64 x 64, calibrated on 8 batches of
16 images (seeded); jq's default 8-bit MSE PTQ. Printed per run: the whole call and its
statistics stage (first call in the process, compilation included), and whether every quantized
param except the biases (bias correction sums channel means, which round differently) equals the
single-device run's bit for bit.

On a CPU host the forced devices share the same cores, so more devices do not run faster here:
the table shows what sharding costs (collectives, one program per device) and that the answer
does not change. On a machine with several accelerators the same call splits the work.

Run: ``python benchmarks/bench_scale.py``
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_BATCHES, BATCH, SIZE = 8, 16, 64


def _data(pid: int = 0, n_proc: int = 1):
    import numpy as np

    rng = np.random.default_rng(0)
    full = [rng.standard_normal((BATCH, 3, SIZE, SIZE), dtype=np.float32) for _ in range(N_BATCHES)]
    return [b[pid::n_proc] for b in full]


def child(devices: int, pid: int | None, port: int | None) -> dict:
    import jax

    if pid is not None:
        jax.config.update("jax_num_cpu_devices", devices)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    import numpy as np
    import torch
    import torchvision

    import jq.core
    import jq.ptq
    import jq_torch

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    batches = _data(pid or 0, 2 if pid is not None else 1)
    graph, params = jq_torch.from_torch(model, batches[0])
    core = jq.core.CoreConfig(progress=False)
    t = time.perf_counter()
    res = jq.ptq.quantize_graph(graph, params, lambda: ([b] for b in batches), core_config=core)
    total = time.perf_counter() - t
    digest = hashlib.sha256()
    for path, v in jax.tree_util.tree_leaves_with_path(res.params):
        if not jax.tree_util.keystr(path).endswith("['bias']"):
            digest.update(np.asarray(v).tobytes())
    timings = res.info.timings
    return {
        "devices": len(jax.devices()),
        "total": total,
        "statistics": timings.get("statistics", float("nan")),
        "digest": digest.hexdigest(),
    }


def _run(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--child", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(p: subprocess.Popen) -> dict:
    out, err = p.communicate(timeout=1200)
    if p.returncode:
        raise RuntimeError(err[-2000:])
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters")])}
    print(
        f"resnet18 64x64, {N_BATCHES} batches of {BATCH}; CPU cores: {os.cpu_count()}; "
        f"load average at start: {os.getloadavg()[0]:.2f}"
    )
    print(f"{'run':<26} {'devices':>7} {'PTQ call':>9} {'statistics':>10}  same thresholds")
    base = None
    for n in (1, 2, 4, 8):
        flags = f"--xla_force_host_platform_device_count={n}"
        r = _result(_run([str(n)], {**env, "XLA_FLAGS": flags}))
        base = base or r["digest"]
        same = r["digest"] == base
        print(
            f"{f'1 process, {n} devices':<26} {r['devices']:>7} {r['total']:8.1f}s "
            f"{r['statistics']:9.1f}s  {same}",
            flush=True,
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    procs = [_run(["2", str(i), port], env) for i in range(2)]
    rs = [_result(p) for p in procs]
    for i, r in enumerate(rs):
        same = r["digest"] == base
        print(
            f"{f'2 processes: process {i}':<26} {r['devices']:>7} {r['total']:8.1f}s "
            f"{r['statistics']:9.1f}s  {same}",
            flush=True,
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        rest = sys.argv[2:]
        pid, port = (int(rest[1]), int(rest[2])) if len(rest) > 1 else (None, None)
        print(json.dumps(child(int(rest[0]), pid, port)))
    else:
        if sys.argv[1:] == ["--write-docs"]:  # replace this script's section of the page
            import _page

            _page.record_stdout("scale")
        main()
