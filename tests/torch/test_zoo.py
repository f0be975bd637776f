"""Model zoo: each model converted with jq_torch and run in JAX matches torch.

Tolerance: max abs diff <= 1e-4 * max(1, max |torch output|), float32, for the jitted and the
eager ``apply``. Models are randomly initialised (``weights=None``, seeded; nothing downloads),
with batch-norm statistics and zero-initialised heads randomised so that outputs are O(1)
(``_helpers.randomize_``); each test also checks the output is not vanishingly small.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _helpers import check_model, randomize_  # noqa: E402

# (name, image size, batch, eager in the default run). 64x64 keeps the CNNs quick; ViT-B/16
# needs 224. Eager JAX compiles every primitive of every shape separately (20-40 s for the
# mobile nets on 2 cores), so those eager runs are in the slow test; jit runs for all.
VISION = [
    ("resnet18", 64, 2, True),
    ("mobilenet_v2", 64, 2, False),
    ("mobilenet_v3_small", 64, 2, False),
    ("efficientnet_b0", 64, 2, False),
    ("regnet_x_400mf", 64, 2, False),
    ("squeezenet1_1", 64, 2, True),
    ("convnext_tiny", 64, 2, False),
    ("vit_b_16", 224, 1, True),
]
HEAVY_EAGER = [v for v in VISION if not v[3]]
# Converted in `make test-all` only (15-25 s each on 2 cores, and vit_b_16 / efficientnet_b0 are
# converted again by the slow export zoo); `make test` keeps a residual, a depthwise, a fire and
# a grouped-conv net.
SLOW_JIT = ("mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "vit_b_16")
QUICK = [v for v in VISION if v[0] not in SLOW_JIT]


def _check_vision(name, size, batch, eager):
    torch.manual_seed(0)
    model = randomize_(getattr(torchvision.models, name)(weights=None).eval())
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    result = check_model(model, x, eager=eager)
    assert result["scale"] > 1e-2, result  # a meaningful comparison


@pytest.mark.parametrize("name,size,batch,eager", QUICK, ids=[v[0] for v in QUICK])
def test_torchvision(name, size, batch, eager):
    _check_vision(name, size, batch, eager)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_JIT)
def test_torchvision_heavy(name):
    _check_vision(*next(v for v in VISION if v[0] == name))


@pytest.mark.slow
@pytest.mark.parametrize("name,size,batch,eager", HEAVY_EAGER, ids=[v[0] for v in HEAVY_EAGER])
def test_torchvision_eager(name, size, batch, eager):
    _check_vision(name, size, batch, True)


class Encoder(nn.Module):
    """A small nn.TransformerEncoder (post-norm, then pre-norm with GELU), with a causal mask."""

    def __init__(self, d=32, t=10):
        super().__init__()
        post = nn.TransformerEncoderLayer(d, 4, 64, dropout=0.1, batch_first=True)
        pre = nn.TransformerEncoderLayer(
            d, 4, 64, dropout=0.1, activation="gelu", batch_first=True, norm_first=True
        )
        self.post = nn.TransformerEncoder(post, 2, enable_nested_tensor=False)
        self.pre = nn.TransformerEncoder(pre, 1, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(t))

    def forward(self, x):
        return self.pre(self.post(x), mask=self.mask, is_causal=True)


def test_transformer_encoder():
    torch.manual_seed(0)
    x = torch.randn(2, 10, 32)
    check_model(Encoder().eval(), x)


class FunctionalCNN(nn.Module):
    """User style: functional calls, residual adds, cat, view, pooling, softmax."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.c3 = nn.Conv2d(16, 8, 1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        y = F.relu(self.c1(x))
        z = self.bn(self.c2(y)) + y  # residual
        z = torch.cat([z, F.relu6(y)], dim=1)
        z = F.max_pool2d(self.c3(z), 3, stride=2, padding=1, ceil_mode=True)
        z = F.adaptive_avg_pool2d(z, 4)
        z = z.view(z.shape[0], -1)
        return F.softmax(self.fc(z), dim=-1), z.flatten(1).mean(dim=1)


def test_functional_cnn():
    torch.manual_seed(0)
    check_model(randomize_(FunctionalCNN()), torch.randn(2, 3, 15, 15))


class TinyLM(nn.Module):
    """User style: embedding, permute, matmul, softmax, sdpa, nn.MultiheadAttention."""

    def __init__(self, vocab=50, d=16):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, 12, d) * 0.1)
        self.qkv = nn.Linear(d, 3 * d)
        self.mha = nn.MultiheadAttention(d, 2, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, vocab)

    def forward(self, ids):
        h = self.emb(ids) + self.pos
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        scores = torch.matmul(q, k.permute(0, 2, 1)) / q.shape[-1] ** 0.5
        h = h + torch.matmul(torch.softmax(scores, dim=-1), v)
        heads = h.view(h.shape[0], h.shape[1], 2, -1).transpose(1, 2)
        att = F.scaled_dot_product_attention(heads, heads, heads, is_causal=True)
        h = h + att.transpose(1, 2).reshape(h.shape)
        a, weights = self.mha(h, h, h)  # need_weights=True: the bmm/softmax path
        h = self.norm(h + a)
        return self.out(F.gelu(h, approximate="tanh")), weights


def test_tiny_lm():
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (2, 12))
    check_model(TinyLM().eval(), ids)
