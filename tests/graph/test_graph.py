"""The graph form without torch: hand-built graphs, apply eager vs jit vs NumPy, capture,
hashing, validation, summary, and no re-trace on repeated shapes."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jq import Graph, Node, apply, register_op, registered_ops, summary

RTOL = ATOL = 1e-5  # float32 arithmetic on O(1) values
ROOT = Path(__file__).resolve().parents[2]


def _mlp():
    """x -> fc1 -> relu -> fc2 (+ x residual) -> softmax, with a scalar op and a reshape."""
    nodes = (
        Node("fc1", "linear", ("x",)),
        Node("act", "relu", ("fc1",)),
        Node("fc2", "linear", ("act",)),
        Node("res", "add", ("fc2", "x")),
        Node("half", "mul", ("res",), {"scalar": 0.5, "reverse": False}),
        Node("flat", "reshape", ("half",), {"shape": (2, 4)}),
        Node("prob", "softmax", ("flat",), {"axis": 1}),
    )
    graph = Graph(("x",), nodes, ("prob",), input_shapes=[(2, 4)])
    rng = np.random.default_rng(0)
    params = {
        "fc1": {"weight": rng.normal(size=(8, 4)), "bias": rng.normal(size=8)},
        "fc2": {"weight": rng.normal(size=(4, 8))},
    }
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    return graph, params


def _numpy_mlp(params, x):
    p = jax.tree.map(np.asarray, params)
    fc1 = x @ p["fc1"]["weight"].T + p["fc1"]["bias"]
    act = np.maximum(fc1, 0)
    res = act @ p["fc2"]["weight"].T + x
    z = 0.5 * res
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True), {"fc1": fc1, "act": act}


def _x():
    return np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)


def test_apply_eager_jit_and_numpy_agree():
    graph, params = _mlp()
    x = _x()
    want, _ = _numpy_mlp(params, x)
    with jax.numpy_rank_promotion("raise"):
        eager = apply(graph, params, x)
        jitted = jax.jit(apply, static_argnums=0)(graph, params, x)
    np.testing.assert_allclose(eager, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(jitted, want, rtol=RTOL, atol=ATOL)


def test_capture_returns_intermediates_eager_and_jit():
    graph, params = _mlp()
    x = _x()
    _, want = _numpy_mlp(params, x)
    f = jax.jit(apply, static_argnums=0, static_argnames="capture")
    for run in (apply, f):
        out, acts = run(graph, params, x, capture=("fc1", "act", "x"))
        assert set(acts) == {"fc1", "act", "x"}
        np.testing.assert_allclose(acts["fc1"], want["fc1"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(acts["act"], want["act"], rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(acts["x"], x)
        np.testing.assert_allclose(out, apply(graph, params, x), rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="nope"):
        apply(graph, params, x, capture=("nope",))


def test_several_outputs_are_a_tuple():
    graph, params = _mlp()
    graph = graph.replace(outputs=("prob", "act"))
    prob, act = apply(graph, params, _x())
    assert prob.shape == (2, 4) and act.shape == (2, 8)


def test_graph_is_hashable_and_equal_graphs_share_hash():
    g1, _ = _mlp()
    g2, _ = _mlp()
    assert g1 == g2 and hash(g1) == hash(g2) and g1.fingerprint() == g2.fingerprint()
    assert {g1: 1}[g2] == 1
    # attrs: any order and lists in, sorted tuples out
    a = Node("r", "reshape", ("x",), {"shape": [2, 4], "z": 1})
    b = Node("r", "reshape", ("x",), (("z", 1), ("shape", (2, 4))))
    assert a == b and hash(a) == hash(b) and a.attr("shape") == (2, 4)
    # metadata (shapes) is not part of identity
    assert a.replace(shape=(2, 4)) == a
    g3 = g1.replace(
        nodes=g1.nodes[:-1] + (g1.nodes[-1].replace(attrs={**g1.nodes[-1].attrs_dict, "axis": 0}),)
    )
    assert g3 != g1 and g3.fingerprint() != g1.fingerprint()
    g4 = pickle.loads(pickle.dumps(g1))
    assert g4 == g1 and hash(g4) == hash(g1)


def test_fingerprint_is_stable_across_processes():
    code = (
        "import sys; sys.path.insert(0, '.');"
        "from tests.graph.test_graph import _mlp; print(_mlp()[0].fingerprint())"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=ROOT,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outs == {_mlp()[0].fingerprint()}


def test_validation_errors():
    with pytest.raises(ValueError, match="topologically"):
        Graph(("x",), (Node("b", "relu", ("a",)), Node("a", "relu", ("x",))), ("b",))
    with pytest.raises(ValueError, match="duplicate"):
        Graph(("x",), (Node("a", "relu", ("x",)), Node("a", "relu", ("x",))), ("a",))
    with pytest.raises(ValueError, match="output"):
        Graph(("x",), (Node("a", "relu", ("x",)),), ("b",))
    with pytest.raises(TypeError, match="hashable"):
        Node("a", "reshape", ("x",), {"shape": np.array([1, 2])})
    with pytest.raises(TypeError, match="unknown fields"):
        _mlp()[0].replace(bogus=1)


def test_apply_errors():
    graph, params = _mlp()
    with pytest.raises(TypeError, match="takes 1 inputs"):
        apply(graph, params, _x(), _x())
    with pytest.raises(ValueError, match="needs param 'weight'"):
        apply(graph, {}, _x())
    bad = Graph(("x",), (Node("a", "no_such_op", ("x",)),), ("a",))
    with pytest.raises(ValueError, match="unknown op 'no_such_op'"):
        apply(bad, {}, _x())


def test_consumers_node_lookup_and_rewrite():
    graph, params = _mlp()
    assert [n.name for n in graph.consumers("x")] == ["fc1", "res"]
    assert graph.node("act").op == "relu"
    with pytest.raises(KeyError):
        graph.node("x")  # an input, not a node
    # Insert a node between fc1 and act, as a PTQ pass inserting a quantizer would.
    q = Node("fc1.q", "mul", ("fc1",), {"scalar": 2.0, "reverse": False})
    nodes = []
    for node in graph.nodes:
        nodes.append(node.replace(inputs=tuple("fc1.q" if s == "fc1" else s for s in node.inputs)))
        if node.name == "fc1":
            nodes.append(q)
    g2 = graph.replace(nodes=nodes)
    _, acts = apply(g2, params, _x(), capture=("fc1", "act"))
    np.testing.assert_allclose(acts["act"], np.maximum(2 * acts["fc1"], 0), rtol=RTOL)


def test_summary_table():
    graph, params = _mlp()
    graph = graph.replace(
        nodes=[
            n.replace(param_shapes={k: v.shape for k, v in params.get(n.name, {}).items()})
            for n in graph.nodes
        ]
    )
    text = str(graph)
    lines = text.splitlines()
    assert lines[0].split() == ["name", "op", "inputs", "output", "shape", "params"]
    assert any(ln.split()[:3] == ["fc1", "linear", "x"] and ln.endswith("40") for ln in lines)
    assert "res  " in text and "fc2, x" in text and "(2, 4)" in text
    assert lines[-1].startswith("7 nodes, 72 params")
    assert summary(graph, params) == text
    assert "7 nodes" in repr(graph)


def test_no_retrace_on_repeated_shapes():
    graph, params = _mlp()
    traces = []

    def f(graph, params, x):
        traces.append(1)
        return apply(graph, params, x)

    jf = jax.jit(f, static_argnums=0)
    jf(graph, params, _x())
    jf(graph, params, _x() + 1)
    jf(_mlp()[0], params, _x())  # an equal, separately built graph
    assert len(traces) == 1
    jf(graph.replace(nodes=graph.nodes[:-1], outputs=("flat",)), params, _x())
    assert len(traces) == 2


def test_register_op_rejects_duplicates_and_table_is_read_only():
    with pytest.raises(ValueError, match="already registered"):
        register_op("relu")(lambda params, x: x)
    with pytest.raises(TypeError):
        registered_ops()["relu"] = None
    assert {"conv", "linear", "batch_norm", "fake_quant", "constant"} <= set(registered_ops())


def test_ops_have_docstrings():
    assert all(fn.__doc__ for fn in registered_ops().values())


def test_import_jq_graph_does_not_import_torch():
    code = (
        "import sys; import jq, jq._src.graph.graph, jq._src.graph.ops, jq._src.graph.apply;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
