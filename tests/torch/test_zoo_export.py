"""Zoo models (random init, nothing downloaded) quantized by jq and exported to ONNX: the
files pass onnx.checker and onnxruntime (CPU) runs them.

Tolerances, in steps of the last quantizer (the output grid): FAKELY_QUANT and MCTQ (run with
mct_quantizers' session options, where it and onnxruntime-extensions are installed) with ORT's
optimizations off, and INT8 with its integer kernels, are all within ``STEPS`` steps of the
jq module on every output, and within two steps on 99% of them (measured: mobilenet_v2 INT8
at most 3 steps, 99% within 2). Not bit-equal: torch's and ORT's float convolutions sum in
different orders, ORT's integer kernels requantize each layer with rounding of their own, and
a one-level difference before a quantizer is carried on by the layers after it. Where jq's own
JAX run of the graph is further from the module than that (vit_b_16), the bound is one step
beyond that spread (``_tolerance``).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from _helpers import randomize_  # noqa: E402

import jq  # noqa: E402
import jq.core  # noqa: E402
import jq.exporter  # noqa: E402
import jq.ptq  # noqa: E402

STEPS = 4
ZOO = [("resnet18", 64), ("mobilenet_v2", 64), ("efficientnet_b0", 64), ("vit_b_16", 224)]


def _mctq_options():
    """mct_quantizers' session options (its custom ops), or None where it cannot run them."""
    try:
        import mct_quantizers
        import onnxruntime_extensions  # noqa: F401
    except ImportError:
        return None
    return mct_quantizers.get_ort_session_options()


def _session(path, level, optimized=None, so=None):
    so = so or ort.SessionOptions()
    so.graph_optimization_level = level
    if optimized:
        so.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _tolerance(qmodel, x, want, step) -> tuple[float, float]:
    """``(max, 99th percentile)`` output steps allowed from the module: ``STEPS`` and 2, or
    (where more) one step beyond the spread between jq's own two runtimes, the module and
    ``jq.apply`` of its graph in JAX. A quantized random-init ViT is that sensitive: a
    one-level difference before a LayerNorm of a low-variance token grows to many levels, and
    the JAX run is 16 steps (99%: 11) from the torch module."""
    params = {n.name: qmodel.node_params(n.name) for n in qmodel.graph.nodes}
    params = {k: {p: t.numpy() for p, t in d.items()} for k, d in params.items() if d}
    spread = np.abs(np.asarray(jq.apply(qmodel.graph, params, x.numpy())) - want) / step
    return max(STEPS, float(spread.max()) + 1), max(2.0, float(np.quantile(spread, 0.99)) + 1)


@pytest.mark.slow
@pytest.mark.parametrize("name,size", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_model_exports_and_runs_in_onnxruntime(name, size, tmp_path):
    torch.manual_seed(0)
    model = randomize_(getattr(torchvision.models, name)(weights=None).eval())
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(2, 3, size, size, generator=g) for _ in range(2)]
    data = lambda: ([b] for b in batches)  # noqa: E731
    qmodel, _ = jq.ptq.pytorch_post_training_quantization(
        model, data, core_config=jq.core.CoreConfig(progress=False)
    )
    step = float(qmodel.node_params(qmodel.graph.outputs[0])["scale"])
    x = torch.randn(3, 3, size, size, generator=g)  # a batch size calibration never saw
    with torch.no_grad():
        want = qmodel(x).numpy()
    assert np.abs(want).max() > 10 * step  # a meaningful comparison
    steps, p99 = _tolerance(qmodel, x, want, step)
    levels = ort.GraphOptimizationLevel
    formats = [("FAKELY_QUANT", levels.ORT_DISABLE_ALL), ("INT8", levels.ORT_ENABLE_EXTENDED)]
    if _mctq_options() is not None:
        formats.append(("MCTQ", levels.ORT_DISABLE_ALL))
    for fmt, level in formats:
        path = tmp_path / f"{fmt}.onnx"
        jq.exporter.pytorch_export_model(
            qmodel, path, data, quantization_format=fmt, onnx_opset_version=21
        )
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        opt = tmp_path / f"{fmt}.opt.onnx"
        s = _session(path, level, opt, _mctq_options() if fmt == "MCTQ" else None)
        diff = np.abs(s.run(None, {s.get_inputs()[0].name: x.numpy()})[0] - want) / step
        assert diff.max() <= steps and np.quantile(diff, 0.99) <= p99 + 1e-6, (fmt, diff.max())
        if fmt == "INT8":
            kernels = {n.op_type for n in onnx.load(str(opt)).graph.node}
            assert kernels & {"QLinearConv", "QLinearMatMul", "QGemm"}, kernels


@pytest.mark.slow
def test_tiny_lm_exports_and_runs_in_onnxruntime(tmp_path):
    """The zoo's tiny LM (integer token ids, embedding, sdpa, nn.MultiheadAttention with its
    weights output, layer norm, tanh gelu) in all three ONNX formats."""
    from test_zoo import TinyLM

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, 50, (2, 12), generator=g) for _ in range(2)]
    data = lambda: ([b] for b in batches)  # noqa: E731
    qmodel, _ = jq.ptq.pytorch_post_training_quantization(
        TinyLM().eval(), data, core_config=jq.core.CoreConfig(progress=False)
    )
    x = torch.randint(0, 50, (3, 12), generator=g)
    with torch.no_grad():
        want = [t.numpy() for t in qmodel(x)]
    steps = [float(qmodel.node_params(o)["scale"]) for o in qmodel.graph.outputs]
    levels = ort.GraphOptimizationLevel
    formats = [("FAKELY_QUANT", levels.ORT_DISABLE_ALL, 0), ("INT8", levels.ORT_ENABLE_EXTENDED, 1)]
    if _mctq_options() is not None:
        formats.append(("MCTQ", levels.ORT_DISABLE_ALL, 0))
    for fmt, level, tol in formats:
        path = tmp_path / f"{fmt}.onnx"
        jq.exporter.pytorch_export_model(
            qmodel, path, data, quantization_format=fmt, onnx_opset_version=21
        )
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        s = _session(path, level, None, _mctq_options() if fmt == "MCTQ" else None)
        outs = s.run(None, {s.get_inputs()[0].name: x.numpy()})
        for got, ref, step in zip(outs, want, steps, strict=True):
            assert np.abs(got - ref).max() / step <= tol + 1e-6, fmt
