"""2,000 single calls of jq's functional API over random shapes and options, in one process.

Run by ``tests/select/test_buckets.py`` in a fresh subprocess; prints one JSON line: the number of
compiled programs (XLA executables created, from JAX's compile events) and the process's memory
mappings (``/proc/self/maps``) after each quarter of the calls, and the number of distinct
bucket keys the calls used.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
from jax import monitoring

import jq
from jq._src.select.buckets import bucket

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
WEIGHT_OPTIONS = (
    ("symmetric", "mse", True),
    ("uniform", "mae", False),
    ("power_of_two", "lp", True),
)
N_BINS = (64, 128)


def main(n_calls: int, seed: int) -> dict:
    compiled = [0]

    def listen(event, duration, **kwargs):
        del duration, kwargs
        if event == COMPILE_EVENT:
            compiled[0] += 1

    monitoring.register_event_duration_secs_listener(listen)
    rng = np.random.default_rng(seed)
    keys = set()
    marks = []
    for i in range(n_calls):
        c, k = int(rng.integers(1, 17)), int(rng.integers(1, 33))
        x = rng.standard_normal((c, k)).astype(np.float32)
        kind = i % 4
        if kind < 2:
            method, err, per_channel = WEIGHT_OPTIONS[int(rng.integers(len(WEIGHT_OPTIONS)))]
            qp = jq.weights_qparams(x, method=method, error_method=err, per_channel=per_channel)
            shape = (bucket(c), bucket(k)) if per_channel else (1, bucket(c * k))
            keys.add(("weights", method, err, shape))
            jq.fake_quant(x, qp)
            keys.add(("fake_quant", method, shape))
        else:
            n_bins = N_BINS[int(rng.integers(len(N_BINS)))]
            edges, counts = jq.histogram(x, n_bins=n_bins)
            keys.add(("histogram", n_bins, bucket(c * k)))
            err = ("mse", "noclipping")[kind - 2]
            jq.activation_qparams(edges, counts, error_method=err)
            keys.add(("activation", n_bins, err))
        if (i + 1) % (n_calls // 4) == 0:
            with open("/proc/self/maps") as f:
                marks.append({"calls": i + 1, "programs": compiled[0], "maps": len(f.readlines())})
    return {"marks": marks, "keys": len(keys), "jax": jax.__version__}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
