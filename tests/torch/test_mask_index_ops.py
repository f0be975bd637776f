"""Converters of ``_aten_index.py`` (masks, indexing, norms, resampling) and their jq ops,
each against torch: the jitted graph and its ``to_torch`` twin within ``1e-4 * max(1, |y|)``,
at the example batch and at another batch size where the graph keeps the batch dynamic."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _helpers import RTOL, Fn, check_model, max_diff  # noqa: E402

import jq_torch  # noqa: E402


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


CASES = {
    "nearest_x2": (lambda x: F.interpolate(x, scale_factor=2.0), (2, 3, 5, 7)),
    "nearest_size": (lambda x: F.interpolate(x, size=(7, 4)), (2, 3, 5, 7)),
    "nearest_exact": (lambda x: F.interpolate(x, size=(9, 3), mode="nearest-exact"), (2, 3, 5, 7)),
    "bilinear": (lambda x: F.interpolate(x, size=(9, 11), mode="bilinear"), (2, 3, 5, 7)),
    "bilinear_down": (lambda x: F.interpolate(x, size=(3, 4), mode="bilinear"), (2, 3, 5, 7)),
    "bilinear_corners": (
        lambda x: F.interpolate(x, scale_factor=1.5, mode="bilinear", align_corners=True),
        (2, 3, 5, 7),
    ),
    "linear_1d": (lambda x: F.interpolate(x, size=13, mode="linear"), (2, 3, 5)),
    "upsample_module": (nn.Upsample(scale_factor=3, mode="nearest"), (2, 2, 3, 4)),
    "roll": (lambda x: torch.roll(x, shifts=(2, -1), dims=(2, 3)), (2, 3, 5, 7)),
    "masked_fill_input": (lambda x: x.masked_fill(x > 0.5, -3.0), (2, 3, 5)),
    "where_tensors": (lambda x: torch.where(x > 0, x, x * 0.1), (2, 3, 5)),
    "where_scalar": (lambda x: torch.where(x.abs() < 1, 0.0, -1e4) + x, (2, 4)),
    "logic": (lambda x: ((x > 0) & (x < 1) | (x == 2)).float() + (x != 0).float(), (2, 4)),
    "not": (lambda x: torch.logical_not(x > 0).float(), (2, 4)),
    "clamp": (lambda x: torch.clamp(x, -0.5, 0.7) + x.clamp(min=0.1), (2, 6)),
    "min_max": (lambda x: torch.maximum(x, x.flip(-1)) - torch.minimum(x, x * 2), (2, 6)),
    "norm2": (lambda x: x / x.norm(p=2, dim=(2, 3), keepdim=True), (2, 3, 4, 5)),
    "norm1_inf": (
        lambda x: (
            torch.linalg.vector_norm(x, 1, dim=-1) + torch.linalg.vector_norm(x, float("inf"), -1)
        ),
        (2, 3, 4),
    ),
    "addcmul": (lambda x: torch.addcmul(x, x, x.flip(-1), value=0.5), (2, 3, 4)),
    "sum_amax": (
        lambda x: x.sum(dim=1, keepdim=True) + x.amax(dim=(1, 2), keepdim=True),
        (2, 3, 4),
    ),
    "cumsum_diff": (
        lambda x: torch.cumsum(x, -1) + torch.diff(x, dim=-1, prepend=x[..., :1]),
        (2, 5),
    ),
    "index_arange": (
        lambda x: x[torch.arange(x.shape[0])[:, None], torch.arange(3)[None, :]],
        (2, 4),
    ),
    "index_select": (lambda x: torch.index_select(x, 1, torch.tensor([2, 0, 2])), (2, 4, 3)),
    "slice_write": (lambda x: torch.cat([x, x], 1)[:, :5], (2, 3, 4)),
}


@pytest.mark.parametrize("name", CASES)
def test_op(name):
    fn, shape = CASES[name]
    model = (fn if isinstance(fn, nn.Module) else Fn(fn)).eval()
    x = _x(*shape)
    result = check_model(model, x, eager=False)
    graph = result["graph"]
    twin = jq_torch.to_torch(graph, jq_torch.from_torch(model, x)[1])
    xs = [x] + ([_x(3, *shape[1:], seed=1)] if graph.input_shapes[0][0] == -1 else [])
    for xi in xs:
        with torch.no_grad():
            ref = model(xi).numpy()
            got = twin(xi)
        assert max_diff([ref], got) <= RTOL * max(1.0, float(np.abs(ref).max())), name


def test_padding_mask_is_per_sample():
    """A mask read from an input (a padded batch): `index` + `where` on the runtime values."""

    def fn(x, mask):
        keep = mask[
            torch.arange(x.shape[0])[:, None, None], torch.arange(x.shape[1])[None, None, :]
        ]
        scores = x @ x.transpose(1, 2) + torch.where(keep.bool(), 0.0, torch.finfo(x.dtype).min)
        return scores.softmax(-1) @ x

    x, mask = _x(2, 6, 4), torch.ones(2, 6, dtype=torch.long)
    mask[1, 3:] = 0
    result = check_model(Fn(fn).eval(), x, mask, eager=False)
    assert result["graph"].input_shapes[0][0] == -1, result["graph"].pinned_by


def test_unsupported_index_names_the_problem():
    with pytest.raises(jq_torch.UnsupportedOpError, match="boolean mask"):
        jq_torch.from_torch(Fn(lambda x: x[x > 0]).eval(), _x(2, 3))
    with pytest.raises(jq_torch.UnsupportedOpError, match="vector norm of order 3"):
        jq_torch.from_torch(Fn(lambda x: torch.linalg.vector_norm(x, 3, -1)).eval(), _x(2, 3))
