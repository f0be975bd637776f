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


class TorchPoolNet(torch.nn.Module):
    """Average pools (both divisor rules) between a silu and the next layer, and an NCHW
    flatten: shift-negative correction looks through both (MCT's bypass ops)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.pool = torch.nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        y = self.pool(torch.nn.functional.silu(self.bn(self.conv(x))))
        y = torch.nn.functional.avg_pool2d(torch.nn.functional.silu(self.conv2(y)), 2)
        return self.fc(torch.flatten(y, 1))


class FlaxPoolNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.conv2 = nnx.Conv(4, 4, (3, 3), rngs=rngs)
        self.fc = nnx.Linear(4 * 4 * 4, 3, rngs=rngs)

    def __call__(self, x):
        y = nnx.silu(self.bn(self.conv(x)))
        y = nnx.avg_pool(y, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)
        y = nnx.avg_pool(nnx.silu(self.conv2(y)), (2, 2), (2, 2))
        return self.fc(y.reshape(y.shape[0], -1))  # NHWC flatten


def _pool_twins(seed: int = 0):
    """The pool twins with the same weights; batch-norm scales of 3-5 make the silu outputs
    large enough (``-min / threshold <= 0.05``) for shift-negative correction to apply."""
    torch.manual_seed(seed)
    t = TorchPoolNet().eval()
    with torch.no_grad():
        t.bn.weight.copy_(torch.linspace(3, 5, 4))
        t.bn.running_var.copy_(torch.linspace(0.5, 1.5, 4))
        t.conv2.weight.mul_(4.0)
    f = FlaxPoolNet(nnx.Rngs(0))
    for name in ("conv", "conv2"):
        src, dst = getattr(t, name), getattr(f, name)
        dst.kernel.set_value(src.weight.detach().numpy().transpose(2, 3, 1, 0))
        dst.bias.set_value(src.bias.detach().numpy())
    f.bn.scale.set_value(t.bn.weight.detach().numpy())
    f.bn.bias.set_value(t.bn.bias.detach().numpy())
    f.bn.mean.set_value(t.bn.running_mean.numpy().copy())
    f.bn.var.set_value(t.bn.running_var.numpy().copy())
    w = t.fc.weight.detach().numpy().reshape(3, 4, 4, 4)  # (out, C, H, W)
    f.fc.kernel.set_value(w.transpose(2, 3, 1, 0).reshape(64, 3))  # rows in NHWC order
    f.fc.bias.set_value(t.fc.bias.detach().numpy())
    return t, f


def _thresholds(info):
    out = []
    for layer in info.layers:
        t = layer.threshold
        out.append((layer.kind, np.atleast_1d(np.asarray(t, np.float64))))
    return out


def _both(t, f, compat: bool):
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
    return info_t, info_f


def _assert_same(info_t, info_f):
    a, b = _thresholds(info_t), _thresholds(info_f)
    assert [(li.kind, li.op) for li in info_t.layers] == [(li.kind, li.op) for li in info_f.layers]
    for (kind, ta), (_, tb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(tb, ta, err_msg=kind)


# Two PTQ calls per mode (about 8 s each on a quiet 2-core box): run by `make test-all`.
@pytest.mark.slow
@pytest.mark.parametrize("compat", [False, True])
def test_same_thresholds_torch_and_nnx(compat):
    info_t, info_f = _both(*_twins(), compat)
    assert sum(li.kind == "weights" for li in info_t.layers) == 3 and len(info_t.layers) == 9
    _assert_same(info_t, info_f)


@pytest.mark.slow
@pytest.mark.parametrize("compat", [False, True])
def test_avg_pools_and_flatten_quantize_as_torch(compat):
    info_t, info_f = _both(*_pool_twins(), compat)
    ops = [li.op for li in info_f.layers if li.kind == "activation"]
    assert ops.count("avg_pool") == 2
    snc = [n for n in info_f.notes if n.startswith("shift-negative")]
    assert snc == [n for n in info_t.notes if n.startswith("shift-negative")]
    assert snc and snc[0].startswith("shift-negative correction: 2 values"), snc
    _assert_same(info_t, info_f)
