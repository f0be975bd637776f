"""Calibration split over several devices (``quantize_graph(mesh=...)``): the thresholds do not
depend on the number of devices, bit for bit."""

from __future__ import annotations

import json
import socket
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


def _child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / "sharded_child.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sharded() -> dict:
    return _child()


def _assert_same(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key.endswith("['bias']"):
            np.testing.assert_allclose(a[key], b[key], BIAS_RTOL, BIAS_ATOL, err_msg=what + key)
        else:
            assert a[key] == b[key], f"{what}: {key} differs"


def test_thresholds_do_not_depend_on_the_device_count(sharded):
    runs = sharded["mse"]
    assert {"1", "2", "4"} <= runs.keys()
    for n, res in runs.items():
        _assert_same(runs["1"], res, f"mse on {n} devices: ")


@pytest.mark.slow  # a second 4-device process with six more PTQ runs (about 40 s)
def test_hmse_and_compat_thresholds_do_not_depend_on_the_device_count():
    full = _child("full")
    for case in ("hmse", "compat_mse"):
        runs = full[case]
        assert {"1", "4"} <= runs.keys()
        for n, res in runs.items():
            _assert_same(runs["1"], res, f"{case} on {n} devices: ")
    assert len(full["searches"]) == 4 and all(full["searches"].values()), full["searches"]


def test_thresholds_do_not_depend_on_the_batch_split(sharded):
    """Default mode: integer histogram counts on one canonical grid (3 x 8 vs 2 x 12 samples)."""
    _assert_same(sharded["mse"]["1"], sharded["mse"]["1 by12"], "2 batches of 12: ")


def test_a_batch_that_does_not_split_evenly(sharded):
    assert "6 samples does not split evenly over the mesh's 4 devices" in sharded["indivisible"]
    # The default mesh (all devices) runs such a batch on one device instead.
    _assert_same(sharded["auto_1"], sharded["auto_indivisible"], "default mesh: ")


def test_batched_searches_split_over_devices_equal_one_device(sharded):
    """``weights_qparams_batch(mesh=...)`` / ``activation_qparams_batch(mesh=...)``: each of 4
    devices searches its share of the tensors or histograms; results bit-equal."""
    assert len(sharded["searches"]) == 4
    assert all(sharded["searches"].values()), sharded["searches"]


def test_mesh_must_be_a_mesh():
    g = jq.Graph(inputs=("x",), nodes=(jq.Node("r", "relu", ("x",)),), outputs=("r",))
    xs = [np.ones((2, 3), np.float32)]
    cfg = jq.core.CoreConfig(progress=False)
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        jq.ptq.quantize_graph(g, {}, lambda: iter(xs), core_config=cfg, mesh="all")
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh or None"):
        jq.weights_qparams_batch([np.ones((2, 3), np.float32)], mesh=4)
    one = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    res = jq.ptq.quantize_graph(g, {}, lambda: iter(xs), core_config=cfg, mesh=one)
    assert res.info.layers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(*extra: str) -> list[subprocess.CompletedProcess]:
    """Run ``multiprocess_child.py`` as processes 0 and 1 of one job; both must end within
    120 s (the child's heartbeat timeout is 10 s)."""
    port = str(_free_port())
    cmd = [sys.executable, str(HERE / "multiprocess_child.py")]
    procs = [
        subprocess.Popen(
            [*cmd, str(i), port, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def test_two_processes_choose_the_thresholds_of_one(sharded):
    """2 processes x 2 CPU devices (gloo), each yielding half of every batch: both end with
    the single-process model, bit for bit (biases within rounding)."""
    runs = _two_processes()
    for r in runs:
        assert r.returncode == 0, r.stderr[-3000:]
    a, b = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    _assert_same(a, b, "process 0 vs 1: ")
    _assert_same(sharded["mse"]["1"], a, "2 processes vs 1: ")


def test_a_generator_that_raises_on_one_process_ends_all_of_them():
    p0, p1 = _two_processes("raise")
    assert p1.returncode != 0 and "data generator of process 1 failed" in p1.stderr
    assert p0.returncode != 0
    assert "process 1 failed while calibrating: RuntimeError: the data generator" in p0.stderr


@pytest.mark.slow  # waits out the coordination service's 10 s heartbeat timeout
def test_a_process_that_dies_ends_the_others():
    """JAX's coordination service notices the missing heartbeats and ends the job."""
    p0, p1 = _two_processes("die")
    assert p1.returncode == 3
    assert p0.returncode != 0 and "stopped sending heartbeats" in p0.stderr
