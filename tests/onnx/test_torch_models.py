"""torchvision models and a transformer block exported with ``torch.onnx.export`` and read
back with ``jq_onnx.from_onnx``: outputs equal onnxruntime's on the same file."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import jax  # noqa: E402
from _onnx_models import run_ort  # noqa: E402

import jq  # noqa: E402
import jq_onnx  # noqa: E402

# Tolerance against onnxruntime on the same file, relative to the output's largest magnitude:
# float32 sums in different orders (measured: at most 8.3e-7, resnet18, batches 2 and 3).
REL_TOL = 1e-4


def randomize_bn(model):
    """Batch-norm statistics of a trained-looking model (torchvision's random init keeps
    mean 0 / var 1, and MobileNetV2's zero-initialised last BN of each block makes outputs
    of order 1e-9, which would test nothing)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def export(model, example, path, names=("input",)):
    """``torch.onnx.export`` with a dynamic batch axis. The TorchScript exporter
    (``dynamo=False``): the dynamo one needs onnxscript, which the test environment lacks; its
    DeprecationWarning is the one expected here."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "You are using the legacy TorchScript", DeprecationWarning
        )
        torch.onnx.export(
            model,
            (example,),
            path,
            dynamo=False,
            opset_version=17,
            input_names=list(names),
            output_names=["output"],
            dynamic_axes={names[0]: {0: "batch"}, "output": {0: "batch"}},
        )
    return str(path)


run = jax.jit(jq.apply, static_argnums=0)


def check_file(path, shape, batches=(2, 3)):
    graph, params = jq_onnx.from_onnx(path)
    assert graph.input_shapes[0][0] == -1 and not graph.pinned_by
    for n in batches:
        x = np.random.default_rng(n).standard_normal((n, *shape)).astype(np.float32)
        want = run_ort(path, x)[0]
        got = np.asarray(run(graph, params, x))  # jitted: eager would compile op by op
        assert got.shape == want.shape
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < REL_TOL, err
    return graph, params


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_model_reads_back(tmp_path, name):
    torch.manual_seed(0)
    model = randomize_bn(getattr(torchvision.models, name)(weights=None))
    path = export(model, torch.randn(1, 3, 64, 64), tmp_path / f"{name}.onnx")
    graph, _ = check_file(path, (3, 64, 64))
    ops = {n.op for n in graph.nodes}
    assert {"conv", "linear"} <= ops and not ops & {"constant", "matmul"}


class Block(torch.nn.Module):
    """A pre-norm transformer block (multi-head attention written out, GELU MLP)."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.fc1, self.fc2 = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(self.ln1(x)).reshape(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        a = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(-1)
        x = x + self.proj((a @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))


def test_transformer_block_reads_back(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(Block(), Block()).eval()
    path = export(model, torch.randn(2, 10, 32), tmp_path / "block.onnx", names=("x",))
    graph, params = check_file(path, (10, 32))
    # Shape -> Gather -> Concat -> Reshape chains folded; MatMul + Add fused into linear layers
    # with biases; GELU's Erf pattern fused into one gelu node.
    ops = [n.op for n in graph.nodes]
    assert ops.count("linear") == 8 and ops.count("gelu") == 2 and "erf" not in ops
    assert all("bias" in params[n.name] for n in graph.nodes if n.op == "linear")
