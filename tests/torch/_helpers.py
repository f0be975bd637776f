"""Shared checks for the torch adapter tests: convert, run in JAX (eager and jit), compare."""

from __future__ import annotations

import jax
import numpy as np
import torch

import jq_torch
from jq import apply

RTOL = 1e-4  # max abs diff <= RTOL * max(1, max |torch output|), float32

_jit_apply = jax.jit(apply, static_argnums=0)


def _flat(out) -> list[np.ndarray]:
    if isinstance(out, torch.Tensor):
        return [out.detach().numpy()]
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _flat(o)]
    return [np.asarray(out)]


def max_diff(ref: list[np.ndarray], got) -> float:
    got = _flat(got if isinstance(got, tuple) else (got,))
    assert len(got) == len(ref)
    return max(
        float(np.max(np.abs(np.asarray(g) - r), initial=0.0)) for g, r in zip(got, ref, strict=True)
    )


def check_model(model: torch.nn.Module, *inputs: torch.Tensor, eager: bool = True) -> dict:
    """Convert ``model`` and compare torch with jq (jitted, and eager unless disabled).

    Returns ``{"eager": diff, "jit": diff, "scale": max|out|, "graph": graph}`` (eager diff
    None when skipped).
    """
    model.eval()
    graph, params = jq_torch.from_torch(model, inputs)
    with torch.no_grad():
        ref = _flat(model(*inputs))
    scale = max(float(np.max(np.abs(r))) for r in ref)
    tol = RTOL * max(1.0, scale)
    xs = [x.numpy() for x in inputs]
    result = {"scale": scale, "jit": max_diff(ref, _jit_apply(graph, params, *xs)), "eager": None}
    result["graph"] = graph
    assert result["jit"] <= tol, result
    if eager:
        result["eager"] = max_diff(ref, apply(graph, params, *xs))
        assert result["eager"] <= tol, result
    return result


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give freshly initialised models informative outputs: random batch-norm statistics and
    affine params, random layer scales, and random weights where init left zeros (ViT head),
    so that outputs are O(1) rather than vanishing (a vacuous comparison)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
        for name, p in model.named_parameters():
            if "layer_scale" in name:
                p.copy_(0.2 + 0.3 * torch.rand(p.shape, generator=g))
            elif p.ndim >= 2 and not p.any():
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
    return model


class Fn(torch.nn.Module):
    """Wrap a function of the inputs as a module."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)
