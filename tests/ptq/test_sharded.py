"""Calibration split over several devices (``quantize_graph(mesh=...)``): the thresholds do not
depend on the number of devices, bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jq
import jq.core
import jq.ptq

HERE = Path(__file__).parent
# Bias correction averages per-batch channel means: sums over shards round differently.
BIAS_RTOL, BIAS_ATOL = 1e-5, 1e-7


@pytest.fixture(scope="module")
def sharded() -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / "sharded_child.py")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_same(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key.endswith("['bias']"):
            np.testing.assert_allclose(a[key], b[key], BIAS_RTOL, BIAS_ATOL, err_msg=what + key)
        else:
            assert a[key] == b[key], f"{what}: {key} differs"


@pytest.mark.parametrize("case", ["mse", "hmse", "compat_mse"])
def test_thresholds_do_not_depend_on_the_device_count(sharded, case):
    runs = sharded[case]
    assert len(runs) >= 2
    for n, res in runs.items():
        _assert_same(runs["1"], res, f"{case} on {n} devices: ")


def test_thresholds_do_not_depend_on_the_batch_split(sharded):
    """Default mode: integer histogram counts on one canonical grid (3 x 8 vs 2 x 12 samples)."""
    _assert_same(sharded["mse"]["1"], sharded["mse"]["1 by12"], "2 batches of 12: ")


def test_a_batch_that_does_not_split_evenly(sharded):
    assert "6 samples does not split evenly over the mesh's 4 devices" in sharded["indivisible"]
    # The default mesh (all devices) runs such a batch on one device instead.
    _assert_same(sharded["auto_1"], sharded["auto_indivisible"], "default mesh: ")


def test_mesh_must_be_a_mesh():
    g = jq.Graph(inputs=("x",), nodes=(jq.Node("r", "relu", ("x",)),), outputs=("r",))
    xs = [np.ones((2, 3), np.float32)]
    cfg = jq.core.CoreConfig(progress=False)
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        jq.ptq.quantize_graph(g, {}, lambda: iter(xs), core_config=cfg, mesh="all")
    one = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    res = jq.ptq.quantize_graph(g, {}, lambda: iter(xs), core_config=cfg, mesh=one)
    assert res.info.layers
