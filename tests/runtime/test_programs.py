"""jq's program store: bounded, least recently used out, executables released."""

from __future__ import annotations

import gc
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jq
from jq._src.runtime import programs
from jq._src.runtime.jit import jit
from jq._src.runtime.programs import ProgramStore


def test_store_evicts_least_recently_used():
    store = ProgramStore(capacity=2)
    made = []

    def maker(name):
        def make():
            made.append(name)
            return jax.jit(lambda x: x + len(name))

        return make

    store.get("a", maker("a"))
    store.get("bb", maker("bb"))
    store.get("a", maker("a"))  # a hit: "a" becomes the most recent
    store.get("ccc", maker("ccc"))  # evicts "bb"
    assert made == ["a", "bb", "ccc"] and len(store) == 2 and store.evictions == 1
    store.get("bb", maker("bb"))  # made again; evicts "a"
    assert made[-1] == "bb" and store.evictions == 2


def test_store_rejects_a_zero_capacity(monkeypatch):
    with pytest.raises(ValueError, match="capacity"):
        ProgramStore(capacity=0)
    monkeypatch.setenv("JQ_MAX_PROGRAMS", "many")
    with pytest.raises(ValueError, match="JQ_MAX_PROGRAMS"):
        programs._capacity_from_env()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
def test_evicted_programs_release_their_mappings(monkeypatch):
    """80 shapes through a store of 4: the mappings stay near where 4 programs put them."""
    monkeypatch.setattr(programs, "_store", ProgramStore(capacity=4))
    f = jit(lambda x: jnp.sin(x) * 2 + x.sum())

    def maps():
        gc.collect()
        with open("/proc/self/maps") as fh:
            return len(fh.readlines())

    for n in range(1, 9):
        f(np.ones(n, np.float32))
    before = maps()
    for n in range(9, 81):
        f(np.ones(n, np.float32))
    assert maps() <= before + 100
    assert f._cache_size() <= 4


def test_a_cached_call_does_not_retrace_and_results_are_unchanged(monkeypatch):
    monkeypatch.setattr(programs, "_store", ProgramStore(capacity=2))
    traces = []

    def body(x, *, k):
        traces.append(x.shape)
        return x * k

    f = jit(body, static_argnames="k")
    x = np.arange(3.0, dtype=np.float32)
    assert f(x, k=2).tolist() == [0.0, 2.0, 4.0]
    assert f(x, k=2).tolist() == [0.0, 2.0, 4.0]
    assert len(traces) == 1
    f(x, k=3)
    f(np.ones(5, np.float32), k=3)  # evicts k=2
    assert f(x, k=2).tolist() == [0.0, 2.0, 4.0] and len(traces) == 4


def test_functional_api_results_survive_eviction(monkeypatch, rng):
    monkeypatch.setattr(programs, "_store", ProgramStore(capacity=1))
    w = rng.standard_normal((6, 5)).astype(np.float32)
    first = np.asarray(jq.weights_qparams(w).threshold)
    jq.weights_qparams(w, method="uniform")  # evicts the symmetric search
    np.testing.assert_array_equal(np.asarray(jq.weights_qparams(w).threshold), first)


def test_warmup_fills_the_persistent_cache_with_the_tile_programs(tmp_path):
    """``python -m jq warmup`` compiles every default-mode tile search and the statistics
    histogram programs into the cache folder, and a later process's first call finds its program
    there."""
    import os
    import subprocess
    import sys

    from jq._src.select import tiles

    env = {**os.environ, "JQ_COMPILATION_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "jq", "warmup", "--no-errors"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=600,
    )
    n = 3 * len(tiles.WIDTHS) * len(tiles.SIZES)
    assert f"compiled {n} search programs and the statistics histogram programs" in out.stdout
    # + the histogram programs: grids, add, 3 row counts, 3 MCT row histograms, 2 finalizes
    assert len(list(tmp_path.glob("*-cache"))) >= n + 10
