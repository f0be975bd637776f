"""Many single calls of jq's functional API over random shapes and options, in one process.

The workload of a user running cases one by one (issue 21): random conv kernels (4-512 output
channels, 1/3/16/64/128/512 input channels, 1x1 and 3x3: up to 512 x 4608), every quantizer
method x error method x n_bits 2..8 x per-channel on/off x both modes, activations from
histograms of 512-8192 bins with every error method, and ``fake_quant`` of the results.

Run by ``tests/select/test_long_process.py`` in a fresh subprocess; prints one JSON line: the
process's memory mappings (``/proc/self/maps``) and resident memory after each quarter of the
calls, the number of XLA executables compiled (JAX's compile events) and the program store's
size and evictions.
"""

from __future__ import annotations

import json
import resource
import sys

import jax
import numpy as np
from jax import monitoring

import jq
from jq._src.runtime.programs import program_store

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
METHODS = ("power_of_two", "symmetric", "uniform")
ERRORS = ("noclipping", "mse", "mae", "kl", "lp", "hmse")
ACT_ERRORS = ("noclipping", "mse", "mae", "kl", "lp")
OUT_CHANNELS = (4, 7, 16, 33, 64, 100, 128, 300, 512)
IN_CHANNELS = (1, 3, 16, 64, 128, 512)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _maps() -> int:
    with open("/proc/self/maps") as f:
        return len(f.readlines())


def _weights_call(rng: np.random.Generator, compat: bool, max_elements: int) -> None:
    while True:
        o, i = int(rng.choice(OUT_CHANNELS)), int(rng.choice(IN_CHANNELS))
        k = int(rng.choice((1, 3)))
        if o * i * k * k <= max_elements:
            break
    w = rng.standard_normal((o, i, k, k)).astype(np.float32)
    method, err = str(rng.choice(METHODS)), str(rng.choice(ERRORS))
    n_bits, per_channel = int(rng.integers(2, 9)), bool(rng.integers(2))
    hess = np.abs(rng.standard_normal(w.shape)).astype(np.float32) if err == "hmse" else None
    qp = jq.weights_qparams(
        w,
        n_bits=n_bits,
        method=method,
        error_method=err,
        per_channel=per_channel,
        p=float(rng.choice((1.5, 2.0, 3.0))),
        hessian=hess,
        mct_compat=compat,
    )
    jq.fake_quant(w, qp, n_bits=n_bits)


def _activation_call(rng: np.random.Generator, compat: bool) -> None:
    x = rng.standard_normal(int(rng.integers(100, 5000))).astype(np.float32)
    if rng.integers(2):
        x = np.maximum(x, 0)
    n_bins = int(rng.choice((512, 1024, 2048, 4096, 8192)))
    edges, counts = jq.histogram(x, n_bins=n_bins)
    jq.activation_qparams(
        edges,
        counts,
        n_bits=int(rng.integers(2, 9)),
        method=str(rng.choice(METHODS)),
        error_method=str(rng.choice(ACT_ERRORS)),
        p=float(rng.choice((1.5, 2.0, 3.0))),
        mct_compat=compat,
    )


def main(n_calls: int, seed: int, max_elements: int) -> dict:
    compiled = [0]

    def listen(event, duration, **kwargs):
        del duration, kwargs
        if event == COMPILE_EVENT:
            compiled[0] += 1

    monitoring.register_event_duration_secs_listener(listen)
    rng = np.random.default_rng(seed)
    marks = []
    for i in range(n_calls):
        compat = bool(i % 2)
        if i % 4 < 3:
            _weights_call(rng, compat, max_elements)
        else:
            _activation_call(rng, compat)
        if (i + 1) % (n_calls // 4) == 0:
            marks.append(
                {"calls": i + 1, "programs": compiled[0], "maps": _maps(), "rss_mb": _rss_mb()}
            )
    store = program_store()
    return {
        "marks": marks,
        "stored": len(store),
        "capacity": store.capacity,
        "evictions": store.evictions,
        "jax": jax.__version__,
    }


if __name__ == "__main__":
    calls, seed, elements = (int(a) for a in sys.argv[1:4])
    print(json.dumps(main(calls, seed, elements)))
