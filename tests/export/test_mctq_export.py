"""ONNX + MCTQ: jq's file against the one MCT 2.6.1 writes for the same model.

The same small CNN is quantized by MCT's PTQ and exported with
``mct.exporter.pytorch_export_model(..., quantization_format=MCTQ)``, and quantized by jq
(``mct_compat=True``) and exported with ``jq.exporter.pytorch_export_model`` leaving the format
out (MCTQ is the default, as in MCT). Compared: the ``mct_quantizers`` nodes (op types in order,
attributes, thresholds within 1e-6 relative), and the files run in onnxruntime with
``mct_quantizers.get_ort_session_options()`` (onnxruntime-extensions runs the custom ops).

Tolerances: jq's file equals the jq module exactly (POT activation scales, and weights
quantizers that map the module's on-grid kernels to themselves); MCT quantizing its own float
kernels with the file's thresholds gives jq's kernels exactly.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("jq_torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
mct = pytest.importorskip("model_compression_toolkit")
mctq = pytest.importorskip("mct_quantizers")
pytest.importorskip(
    "onnxruntime_extensions", reason="mct_quantizers' onnxruntime ops need it (test extra)"
)

from _export_models import CNN  # noqa: E402

import jq.core  # noqa: E402
import jq.exporter  # noqa: E402
import jq.ptq  # noqa: E402
from jq._src.export.onnx_mctq import MCTQ_DOMAIN, activation_node  # noqa: E402
from jq._src.graph.graph import Node  # noqa: E402
from jq._src.select.quantizers import affine_grid  # noqa: E402

pytestmark = [
    pytest.mark.mct,
    # mct_quantizers' weights quantizers call torch.tensor() while MCT's export traces them
    # (torch's TracerWarning, raised from mct_quantizers' modules): not ours to fix.
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning:mct_quantizers.*"),
]
REL = 1e-6  # thresholds and ranges: float32 in both files


def _mct_export(model, data, path, **qc):
    """MCT's PTQ and MCTQ export. MCT 2.6.1 calls ``torch.onnx.export`` without ``dynamo=``;
    torch >= 2.9 then takes the torch.export-based exporter, which needs onnxscript and does not
    call the quantizers' ``symbolic`` (the custom ops): the legacy exporter MCT was written for
    is asked for instead."""
    core = mct.core.CoreConfig(quantization_config=mct.core.QuantizationConfig(**qc))
    qmodel, _ = mct.ptq.pytorch_post_training_quantization(model, data, core_config=core)
    legacy = functools.partial(torch.onnx.export, dynamo=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.onnx, "export", legacy)
        mct.exporter.pytorch_export_model(
            qmodel,
            str(path),
            data,
            serialization_format=mct.exporter.PytorchExportSerializationFormat.ONNX,
            quantization_format=mct.exporter.QuantizationFormat.MCTQ,
        )
    return onnx.load(str(path))


class SNCNet(torch.nn.Module):
    """SiLU into padded convs: shift-negative correction, 16-bit values and a shift add."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.c1, self.b1, self.a1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU()
        self.c2, self.a2 = nn.Conv2d(8, 8, 3, padding=1), nn.Hardswish()
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = self.a2(self.c2(self.a1(self.b1(self.c1(x)))))
        return self.fc(torch.nn.functional.avg_pool2d(x, 2).flatten(1))


def _export_both(model, batches, folder, **qc):
    """``(jq module, jq's file, MCT's file)`` for ``model`` calibrated on ``batches``; jq with
    ``mct_compat=True`` and MCT with the same ``QuantizationConfig`` fields ``qc``."""

    def data():
        return ([b] for b in batches)

    theirs = _mct_export(model, data, folder / "mct.onnx", **qc)
    config = jq.core.QuantizationConfig(mct_compat=True, **qc)
    core = jq.core.CoreConfig(quantization_config=config, progress=False)
    qmodel, _ = jq.ptq.pytorch_post_training_quantization(model, data, core_config=core)
    jq.exporter.pytorch_export_model(qmodel, folder / "jq.onnx", data)  # MCTQ: the default
    ours = onnx.load(str(folder / "jq.onnx"))
    onnx.checker.check_model(ours, full_check=True)
    return qmodel, ours, theirs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mctq")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    batches = [torch.rand(8, 1, 8, 8, generator=g) * 2 - 0.5 for _ in range(3)]
    qmodel, ours, theirs = _export_both(CNN().eval(), batches, folder)
    return qmodel, folder, ours, theirs


def _quantizers(model):
    """``[(op_type, attrs, [constant inputs])]`` of the mct_quantizers nodes, in graph order."""
    consts = {
        n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t)
        for n in model.graph.node
        if n.op_type == "Constant"
    }
    out = []
    for n in model.graph.node:
        if n.domain == MCTQ_DOMAIN:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            out.append((n.op_type, attrs, [consts[i] for i in n.input[1:]]))
    return out


def _same(ours, theirs, where):
    assert ours.keys() == theirs.keys(), where
    for k, v in theirs.items():
        if isinstance(v, float):
            np.testing.assert_allclose(ours[k], v, rtol=REL, atol=0, err_msg=f"{where} {k}")
        else:
            assert ours[k] == v, (where, k)


def _compare_quantizers(ours, theirs, n):
    assert {o.domain: o.version for o in ours.opset_import} == {
        o.domain: o.version for o in theirs.opset_import
    }
    q_ours, q_theirs = _quantizers(ours), _quantizers(theirs)
    assert [t for t, _, _ in q_ours] == [t for t, _, _ in q_theirs]
    assert len(q_ours) == n
    for i, ((op, a, c), (_, a_mct, c_mct)) in enumerate(zip(q_ours, q_theirs, strict=True)):
        _same(a, a_mct, f"node {i} ({op})")
        assert [x.shape for x in c] == [x.shape for x in c_mct]
        for x, x_mct in zip(c, c_mct, strict=True):
            np.testing.assert_allclose(x, x_mct, rtol=REL, atol=0, err_msg=f"node {i} ({op})")


def test_quantizer_nodes_match_mcts_file(files):
    _, _, ours, theirs = files
    _compare_quantizers(ours, theirs, 7)  # input + 3 activations + 3 kernels


def _session(model_path):
    so = mctq.get_ort_session_options()
    return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])


def _run_both(qmodel, folder, shape):
    """Both files in onnxruntime equal the jq module, at two batch sizes."""
    ours, theirs = _session(folder / "jq.onnx"), _session(folder / "mct.onnx")
    for batch in (1, 7):
        x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(batch)) * 3 - 1
        with torch.no_grad():
            want = qmodel(x).numpy()
        got = ours.run(None, {ours.get_inputs()[0].name: x.numpy()})[0]
        np.testing.assert_array_equal(got, want)
        mct_out = theirs.run(None, {theirs.get_inputs()[0].name: x.numpy()})[0]
        np.testing.assert_array_equal(mct_out, want)


def test_files_run_in_onnxruntime_and_equal_the_module(files):
    qmodel, folder, _, _ = files
    _run_both(qmodel, folder, (1, 8, 8))


@pytest.mark.slow
def test_shift_negative_net_matches_mcts_file(tmp_path):
    """16-bit activations and the shift-negative add and pad, against MCT's MCTQ file."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    batches = [torch.randn(8, 3, 8, 8, generator=g) * 3 for _ in range(3)]
    qmodel, ours, theirs = _export_both(
        SNCNet().eval(), batches, tmp_path, shift_negative_activation_correction=True
    )
    assert 16 in {a["num_bits"] for _, a, _ in _quantizers(ours)}
    _compare_quantizers(ours, theirs, len(_quantizers(theirs)))
    _run_both(qmodel, tmp_path, (3, 8, 8))


def _kernels(model):
    """The initializer feeding each weights quantizer, in graph order."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[0]] for n in model.graph.node if n.op_type.startswith("Weights")]


def test_mcts_float_kernels_quantize_to_jqs(files):
    """MCT keeps float kernels in front of their quantizer; jq writes them already on the grid.
    The weights quantizer MCT's file carries maps MCT's float kernel to jq's."""
    from mct_quantizers.pytorch.quantizers.weights_inferable_quantizers import (
        weights_symmetric_inferable_quantizer as wsym,
    )

    _, _, ours, theirs = files
    weights = [q for q in _quantizers(theirs) if q[0].startswith("Weights")]
    assert len(weights) == 3
    for (op, a, c), w_mct, w_jq in zip(weights, _kernels(theirs), _kernels(ours), strict=True):
        assert op == "WeightsSymmetricQuantizer"  # MCT's default (IMX500) weights quantizer
        wq = wsym.quantize_sym_weights_numpy(
            w_mct, a["num_bits"], c[0], a["per_channel"], a["channel_axis"]
        )
        np.testing.assert_array_equal(wq.astype(np.float32), w_jq)


@pytest.mark.parametrize(
    "grid",
    [
        dict(threshold=np.float32(0.75), signed=True),  # symmetric, not a power of two
        dict(threshold=np.float32(4.0), signed=False),  # power of two, unsigned
        dict(range_min=np.float32(-0.3), range_max=np.float32(1.7)),  # uniform
    ],
)
def test_activation_attributes_mean_jqs_grid(grid, rng):
    """What ``mct_quantizers``' onnxruntime ops compute from jq's attributes is jq's grid
    (each quantizer kind, without a LayerInfo: the method read from the grid)."""
    from mct_quantizers.pytorch.quantizers.activation_inferable_quantizers import (
        activation_symmetric_inferable_quantizer as asym,
    )
    from mct_quantizers.pytorch.quantizers.activation_inferable_quantizers import (
        activation_uniform_inferable_quantizer as auni,
    )

    scale, lo, hi = (np.asarray(v) for v in affine_grid(8, **grid))
    node = Node("v.act_quant", "fake_quant", ("v",), {})
    mq = activation_node(node, {"scale": scale, "q_min": lo, "q_max": hi}, None)
    x = rng.uniform(-3, 6, size=4096).astype(np.float32)
    want = np.clip(np.round(x / scale), lo, hi) * scale
    a = mq.attrs
    if mq.op_type == "ActivationUniformQuantizer":
        got = auni.quantize_uniform_activations_numpy(
            x, a["min_range"], a["max_range"], a["num_bits"]
        )
    else:
        assert mq.op_type == (
            "ActivationPOTQuantizer"
            if "signed" in grid and not grid["signed"]
            else "ActivationSymmetricQuantizer"
        )
        got = asym.quantize_sym_activations_numpy(x, a["threshold"], a["signed"], a["num_bits"])
    np.testing.assert_allclose(
        got, want, rtol=0, atol=float(scale) * 1e-3
    )  # float64 arithmetic in the uniform op
