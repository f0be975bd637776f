"""The quantized torch module leaves the process: any batch size with one graph, no reference
to the float model, ``torch.save``/``torch.load``, and a ``.pt2`` that a torch-only process
runs. Tolerances: the same graph run by the same torch ops gives the same bits (``equal``);
jq against torch float models within 1e-5 absolute (float32, outputs O(1))."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jq_torch = pytest.importorskip("jq_torch")

import jq  # noqa: E402
import jq.core  # noqa: E402
import jq.ptq  # noqa: E402

QUIET = jq.core.CoreConfig(progress=False)


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(6)
        self.fc = torch.nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc(x.view(x.shape[0], -1))


class Pinned(CNN):
    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc(x.reshape(4, -1))


class Tokens(torch.nn.Module):
    """ViT's pattern: a class token expanded to the batch, cat, attention, token select."""

    def __init__(self, d=8):
        super().__init__()
        self.cls = torch.nn.Parameter(torch.randn(1, 1, d))
        self.attn = torch.nn.MultiheadAttention(d, 2, batch_first=True)
        self.head = torch.nn.Linear(d, 3)

    def forward(self, x):
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.attn(x, x, x, need_weights=False)[0]
        return self.head(x[:, 0])


def _batches(shape, n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(*shape, generator=g) * 2 - 0.5 for _ in range(n)]


@pytest.fixture(scope="module")
def quantized():
    torch.manual_seed(0)
    model = CNN().eval()
    batches = _batches((8, 1, 8, 8))
    qmodel, _ = jq.ptq.pytorch_post_training_quantization(
        model, lambda: ([b] for b in batches), core_config=QUIET
    )
    return qmodel


@pytest.mark.parametrize("cls,shape", [(CNN, (2, 1, 8, 8)), (Tokens, (1, 5, 8))])
def test_one_graph_serves_every_batch_size(cls, shape):
    torch.manual_seed(0)
    model = cls().eval()
    graph, params = jq_torch.from_torch(model, torch.randn(*shape))
    assert graph.input_shapes == ((-1, *shape[1:]),) and graph.pinned_by == ""
    for batch in (1, 3, 7):
        x = torch.randn(batch, *shape[1:])
        with torch.no_grad():
            want = model(x).numpy()
        np.testing.assert_allclose(np.asarray(jq.apply(graph, params, x.numpy())), want, atol=1e-5)
        with torch.no_grad():
            got = jq_torch.to_torch(graph, params)(x).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_pinned_batch_names_the_node():
    torch.manual_seed(0)
    model = Pinned().eval()
    graph, params = jq_torch.from_torch(model, torch.randn(4, 1, 8, 8))
    assert graph.input_shapes == ((4, 1, 8, 8),)
    assert "node 'reshape'" in graph.pinned_by and "x.reshape(4, -1)" in graph.pinned_by
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(
            np.asarray(jq.apply(graph, params, x.numpy())), model(x).numpy(), atol=1e-5
        )
    with pytest.raises(ValueError, match="node 'reshape' fixes the batch size"):
        jq.apply(graph, params, np.zeros((3, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="x.reshape"):
        jq_torch.to_torch(graph, params)(torch.zeros(3, 1, 8, 8))


def test_quantized_module_is_self_contained(quantized):
    assert list(quantized.children()) == []  # no float submodule kept
    kinds = {q.kind for q in quantized.quant_layers}
    assert kinds == {"weights", "activation"}
    buf = io.BytesIO()
    torch.save(quantized, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert loaded.graph == quantized.graph
    x = _batches((5, 1, 8, 8), 1, seed=7)[0]  # a batch size calibration never saw
    with torch.no_grad():
        assert torch.equal(loaded(x), quantized(x))
    assert len(pickle.dumps(quantized)) < 200_000


def test_pt2_runs_in_a_torch_only_process(quantized, tmp_path):
    batch = torch.export.Dim("batch")
    x = _batches((3, 1, 8, 8), 1, seed=3)[0]
    # forward(*inputs): the spec of the varargs is one tuple, one dict per input.
    ep = torch.export.export(quantized, (x,), dynamic_shapes=(({0: batch},),))
    path = tmp_path / "q.pt2"
    with open(path, "wb") as f:  # a path string leaves torch's file handle to the GC
        torch.export.save(ep, f)
    x6 = _batches((6, 1, 8, 8), 1, seed=4)[0]
    torch.save(x6, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(quantized(x6), tmp_path / "want.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        ep = torch.export.load({str(path)!r})
        x = torch.load({str(tmp_path / "x.pt")!r})
        got = ep.module()(x)
        assert torch.equal(got, torch.load({str(tmp_path / "want.pt")!r})), "outputs differ"
        bad = [m for m in ("jq", "jq_torch", "jax") if m in sys.modules]
        assert not bad, bad
        print("ok", tuple(got.shape))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ok (6, 5)" in out.stdout
