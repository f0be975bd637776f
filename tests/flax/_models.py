"""Small Flax models for the adapter tests (random init, seeded; no downloads)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx


class DigitsCNN(nnx.Module):
    """NHWC (N, 8, 8, 1) -> conv, batch norm, silu, residual depthwise block, dense head."""

    def __init__(self, rngs: nnx.Rngs, width: int = 8, classes: int = 10):
        self.stem = nnx.Conv(1, width, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        self.dw = nnx.Conv(width, width, (3, 3), feature_group_count=width, rngs=rngs)
        self.dw_bn = nnx.BatchNorm(width, rngs=rngs)
        self.pw = nnx.Conv(width, 2 * width, (1, 1), rngs=rngs)
        self.head = nnx.Linear(2 * width, classes, rngs=rngs)

    def __call__(self, x):
        y = nnx.silu(self.bn(self.stem(x)))
        y = y + nnx.silu(self.dw_bn(self.dw(y)))
        y = nnx.relu(self.pw(y))
        return self.head(jnp.mean(y, axis=(1, 2)))


class Encoder(nnx.Module):
    """ViT-style: patch conv, layer norm, multi-head self-attention, gelu MLP, mean pool."""

    def __init__(self, rngs: nnx.Rngs, dim: int = 16, heads: int = 2, classes: int = 5):
        self.patch = nnx.Conv(3, dim, (4, 4), strides=(4, 4), padding="VALID", rngs=rngs)
        self.ln1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
        self.ln2 = nnx.LayerNorm(dim, rngs=rngs)
        self.mlp1 = nnx.Linear(dim, 2 * dim, rngs=rngs)
        self.mlp2 = nnx.Linear(2 * dim, dim, rngs=rngs)
        self.head = nnx.Linear(dim, classes, rngs=rngs)

    def __call__(self, x):
        t = self.patch(x)
        t = t.reshape(t.shape[0], -1, t.shape[-1])
        t = t + self.attn(self.ln1(t))
        t = t + self.mlp2(nnx.gelu(self.mlp1(self.ln2(t))))
        return self.head(t.mean(axis=1))


class CausalLM(nnx.Module):
    """Token embedding, causal masked self-attention, layer norm, tied output head."""

    def __init__(self, rngs: nnx.Rngs, vocab: int = 20, dim: int = 16, heads: int = 2):
        self.embed = nnx.Embed(vocab, dim, rngs=rngs)
        self.pos = nnx.Param(jax.random.normal(rngs.params(), (8, dim)) * 0.1)
        self.ln = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
        self.out_ln = nnx.LayerNorm(dim, rngs=rngs)

    def __call__(self, tokens):
        n = tokens.shape[1]
        h = self.embed(tokens) + self.pos[None, :n]
        mask = nnx.make_causal_mask(tokens)
        h = h + self.attn(self.ln(h), mask=mask)
        return self.embed.attend(self.out_ln(h))


class LinenBlock(nn.Module):
    """conv -> BN -> relu -> conv -> BN, plus the input (a ResNet basic block)."""

    features: int

    @nn.compact
    def __call__(self, x):
        y = nn.relu(nn.BatchNorm(use_running_average=True)(nn.Conv(self.features, (3, 3))(x)))
        y = nn.BatchNorm(use_running_average=True)(nn.Conv(self.features, (3, 3))(y))
        return nn.relu(x + y)


class LinenResNet(nn.Module):
    """Stem conv, two basic blocks, global mean, dense head."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        for _ in range(2):
            x = LinenBlock(8)(x)
        return nn.Dense(4)(x.mean(axis=(1, 2)))
