"""ONNX models built in the tests with ``onnx.helper``, and a runner for onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# Parity tolerance of jq against onnxruntime, both float32 on CPU: the two sum in different
# orders (XLA's convolutions against MLAS's), so results differ by float32 rounding.
RTOL, ATOL = 1e-4, 1e-5


def const(name: str, value) -> onnx.NodeProto:
    """A ``Constant`` node holding ``value`` (how converters store weights)."""
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name)
    )


def init(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def model(nodes, inputs, outputs, initializers=(), opset: int = 17) -> onnx.ModelProto:
    """A checked model; ``inputs`` / ``outputs`` are ``(name, shape)`` (float32), a ``str`` dim
    is dynamic."""
    g = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        initializer=list(initializers),
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    if all(s is not None for _, s in outputs):  # the checker wants every output's shape
        onnx.checker.check_model(m, full_check=True)
    return m


def run_ort(m: onnx.ModelProto | str, *xs: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(
        m if isinstance(m, str) else m.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), xs, strict=True)})


def small_cnn(rng: np.random.Generator, *, constant_nodes: bool = True) -> onnx.ModelProto:
    """Conv-BN-ReLU, depthwise Conv-Clip(0, 6), GlobalAveragePool, then a flatten written as
    ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` and a Gemm; weights in ``Constant``
    nodes (or initializers); batch axis dynamic. Input (N, 3, 16, 16), output (N, 10)."""
    f = np.float32
    w = {
        "w1": rng.standard_normal((8, 3, 3, 3)).astype(f) * 0.3,
        "b1": rng.standard_normal(8).astype(f) * 0.1,
        "bn_s": rng.uniform(0.5, 1.5, 8).astype(f),
        "bn_b": rng.standard_normal(8).astype(f) * 0.1,
        "bn_m": rng.standard_normal(8).astype(f) * 0.1,
        "bn_v": rng.uniform(0.5, 1.5, 8).astype(f),
        "w2": rng.standard_normal((8, 1, 3, 3)).astype(f) * 0.3,
        "fc_w": rng.standard_normal((10, 8)).astype(f) * 0.3,
        "fc_b": rng.standard_normal(10).astype(f) * 0.1,
        "zero": np.asarray(0.0, f),
        "six": np.asarray(6.0, f),
        "idx0": np.asarray(0, np.int64),
        "ax0": np.asarray([0], np.int64),
        "minus1": np.asarray([-1], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Clip", ["c2", "zero", "six"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
        helper.make_node("Shape", ["p"], ["shape"]),
        helper.make_node("Gather", ["shape", "idx0"], ["n"]),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1d"]),
        helper.make_node("Concat", ["n1d", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["p", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], transB=1),
    ]
    if constant_nodes:
        nodes = [const(k, v) for k, v in w.items()] + nodes
        inits = []
    else:
        inits = [init(k, v) for k, v in w.items()]
    return model(nodes, [("x", ["N", 3, 16, 16])], [("y", ["N", 10])], inits)
