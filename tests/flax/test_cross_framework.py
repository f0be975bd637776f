"""One network written in PyTorch and in Flax NNX with the same weights gets the same
thresholds from jq, in both modes (issue 11, item 5). MCT's thresholds for the torch version
equal jq's compat ones (tests/torch and tests/select check that), so compat Flax thresholds are
MCT's too."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nnx = pytest.importorskip("flax.nnx")

import jq.core  # noqa: E402
import jq.ptq  # noqa: E402

# Thresholds agree to float32 rounding: the two graphs differ only in how batch-norm scales
# are computed before folding (rsqrt in Flax's forward, 1 / sqrt in jq's folding of torch's).
RTOL = 1e-5


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.dw = torch.nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.dw_bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        y = torch.nn.functional.silu(self.bn(self.conv(x)))
        y = y + torch.relu(self.dw_bn(self.dw(y)))
        return self.fc(y.mean(dim=(2, 3)))


class FlaxNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.dw = nnx.Conv(4, 4, (3, 3), feature_group_count=4, rngs=rngs)
        self.dw_bn = nnx.BatchNorm(4, rngs=rngs)
        self.fc = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        y = nnx.silu(self.bn(self.conv(x)))
        y = y + nnx.relu(self.dw_bn(self.dw(y)))
        return self.fc(y.mean(axis=(1, 2)))


def _twins(seed: int = 0):
    torch.manual_seed(seed)
    t = TorchNet().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (t.bn, t.dw_bn):
            bn.running_mean.copy_(torch.randn(4, generator=g))
            bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
            bn.weight.copy_(torch.rand(4, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(4, generator=g))
    f = FlaxNet(nnx.Rngs(0))
    for name in ("conv", "dw"):
        src, dst = getattr(t, name), getattr(f, name)
        dst.kernel.set_value(src.weight.detach().numpy().transpose(2, 3, 1, 0))  # OIHW -> HWIO
        dst.bias.set_value(src.bias.detach().numpy())
    f.fc.kernel.set_value(t.fc.weight.detach().numpy().T)
    f.fc.bias.set_value(t.fc.bias.detach().numpy())
    for name in ("bn", "dw_bn"):
        src, dst = getattr(t, name), getattr(f, name)
        dst.scale.set_value(src.weight.detach().numpy())
        dst.bias.set_value(src.bias.detach().numpy())
        dst.mean.set_value(src.running_mean.numpy().copy())
        dst.var.set_value(src.running_var.numpy().copy())
    return t, f


def _thresholds(info):
    out = []
    for layer in info.layers:
        t = layer.threshold
        out.append((layer.kind, np.atleast_1d(np.asarray(t, np.float64))))
    return out


# Two PTQ calls per mode (about 8 s each on a quiet 2-core box): run by `make test-all`.
@pytest.mark.slow
@pytest.mark.parametrize("compat", [False, True])
def test_same_thresholds_torch_and_nnx(compat):
    t, f = _twins()
    rng = np.random.default_rng(0)
    xs = [rng.normal(0.3, 1, size=(16, 1, 8, 8)).astype(np.float32)]
    qc = jq.core.QuantizationConfig(mct_compat=compat)
    cfg = jq.core.CoreConfig(quantization_config=qc, progress=False)
    _, info_t = jq.ptq.pytorch_post_training_quantization(
        t, lambda: ([torch.from_numpy(x)] for x in xs), core_config=cfg
    )
    _, info_f = jq.ptq.flax_post_training_quantization(
        f, lambda: ([x.transpose(0, 2, 3, 1)] for x in xs), core_config=cfg
    )
    a, b = _thresholds(info_t), _thresholds(info_f)
    assert [k for k, _ in a] == [k for k, _ in b]
    assert sum(k == "weights" for k, _ in a) == 3 and len(a) == 9  # x, silu, relu, add, mean, fc
    for (kind, ta), (_, tb) in zip(a, b, strict=True):
        np.testing.assert_allclose(tb, ta, rtol=RTOL, err_msg=kind)
