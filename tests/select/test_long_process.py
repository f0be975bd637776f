"""A long process stays bounded: single calls over every shape and option (issue 21's workload)
add no memory mappings and little resident memory once jq's program store is full."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
LINUX = Path("/proc/self/maps").exists()


def _run(calls: int, max_elements: int, capacity: int) -> dict:
    env = {
        **os.environ,
        "JQ_COMPILATION_CACHE": "0",  # every program compiled, none loaded
        "JQ_MAX_PROGRAMS": str(capacity),
    }
    out = subprocess.run(
        [sys.executable, str(HERE / "long_process.py"), str(calls), "0", str(max_elements)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3000,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _check_flat(res: dict) -> None:
    half, last = res["marks"][1], res["marks"][-1]
    assert res["stored"] <= res["capacity"], res
    assert res["evictions"] > 0, res  # the store was full: the bound was exercised
    # Mappings: flat over the second half (a program is ~25-250 mappings; the slack is a
    # store's worth of program-size variation, not growth per call).
    assert last["maps"] <= half["maps"] * 1.15 + 200, res
    assert last["rss_mb"] <= half["rss_mb"] * 1.15 + 100, res


@pytest.mark.skipif(not LINUX, reason="reads /proc/self/maps (Linux)")
def test_long_process_over_every_option_stays_bounded():
    """120 calls (both modes, every method x error method x n_bits 2..8 x granularity, kernels
    up to 300 x 1152, histograms of 512-8192 bins) through a store of 12 programs, which the
    workload overflows many times over. The full 3,000-call run is in ``make test-all``."""
    _check_flat(_run(120, 300 * 1152, 12))


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="reads /proc/self/maps (Linux)")
def test_long_process_3000_calls_up_to_512x4608():
    """Issue 21's figure: 3,000 calls, kernels up to 512 x 4608, the default store (about an
    hour on 2 cores: compat mode compiles one program per bucketed shape, so ``make test-all``)."""
    _check_flat(_run(3000, 512 * 4608, 96))
