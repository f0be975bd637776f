"""In-place ops convert as their out-of-place twins only where nothing else sees the mutation;
otherwise the program is functionalized by torch first. Either way the graph computes what
torch computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import jq
import jq_torch
from jq_torch._batch import dynamic_example, export_dynamic
from jq_torch._inplace import inplace_twin, needs_functionalization


class Safe(torch.nn.Module):
    """inplace=True activations and a residual ``+=``: GhostNet's and ResNet's pattern."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.act = torch.nn.ReLU(inplace=True)
        self.clip = torch.nn.Hardtanh(-1.0, 1.0, inplace=True)

    def forward(self, x):
        y = self.act(self.conv(x))
        y += self.conv(x)
        return self.clip(y * 0.5).flatten(1)


class SliceAdd(torch.nn.Module):
    """GhostNet's ``out[:, :c] += shortcut``: a slice of a computed tensor mutated, its base
    never read again."""

    def forward(self, x):
        out = torch.cat([x * 2, x.relu()], dim=1)
        y = out[:, :4]
        y += x[:, :1]
        return y


class ReadAfter(torch.nn.Module):
    """A view taken before the mutation is read after it."""

    def forward(self, x):
        y = x * 2
        v = y.view(y.shape[0], -1)
        y.relu_()
        return v + 1


class MutatesInput(torch.nn.Module):
    def forward(self, x):
        x.mul_(2)
        return x + 1


class ViewMutated(torch.nn.Module):
    def forward(self, x):
        y = (x * 2).flatten(1)
        y[:, :2].relu_()
        return y


def _ep(model, x):
    return export_dynamic(model, dynamic_example((x,)))


def test_twins():
    aten = torch.ops.aten
    assert inplace_twin(aten.relu_.default) == aten.relu.default
    assert inplace_twin(aten.add_.Tensor) == aten.add.Tensor
    assert inplace_twin(aten.relu.default) is None


@pytest.mark.parametrize(
    "model, needs",
    [
        (Safe(), False),
        (SliceAdd(), False),
        (ReadAfter(), True),
        (MutatesInput(), True),
        (ViewMutated(), True),
    ],
    ids=["safe", "slice_add", "read_after", "mutates_input", "view_mutated"],
)
def test_conversion_matches_torch(model, needs):
    x = torch.randn(2, 3, 6, 6)
    assert needs_functionalization(_ep(model.eval(), x.clone())) is needs
    graph, params = jq_torch.from_torch(model, x.clone())
    with torch.no_grad():
        want = model(x.clone()).numpy()
    np.testing.assert_allclose(jq.apply(graph, params, x.numpy()), want, rtol=1e-5, atol=1e-6)
