"""One process of a 2-process calibration job (``jax.distributed`` on 127.0.0.1, gloo, 2 CPU
devices per process), run by ``tests/ptq/test_sharded.py``.

Usage: ``multiprocess_child.py PROCESS_ID PORT [raise|die]``. Process ``i`` yields samples
``i::2`` of every batch of ``sharded_child``'s data; with ``raise`` process 1's generator raises
at the second batch, with ``die`` process 1 exits there (``os._exit``). Prints one JSON line:
the quantized params as ``sharded_child`` does.
"""

from __future__ import annotations

import json
import os
import sys

import jax

jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_cpu_collectives_implementation", "gloo")

import numpy as np  # noqa: E402
import sharded_child  # noqa: E402


def main(pid: int, port: int, fail: str | None) -> dict:
    jax.distributed.initialize(
        f"127.0.0.1:{port}",
        num_processes=2,
        process_id=pid,
        initialization_timeout=60,
        heartbeat_timeout_seconds=10,
    )
    data = np.random.default_rng(1).normal(size=(24, 3, 8, 8)).astype(np.float32)

    def gen():
        for k, i in enumerate(range(0, 24, 8)):
            if pid == 1 and k == 1 and fail == "die":
                os._exit(3)
            if pid == 1 and k == 1 and fail == "raise":
                raise RuntimeError(f"the data generator of process {pid} failed at batch {k}")
            yield [data[i : i + 8][pid::2]]

    return sharded_child.run("mse", False, None, gen)


if __name__ == "__main__":
    fail = sys.argv[3] if len(sys.argv) > 3 else None
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]), fail)))
    sys.stdout.flush()
