"""The Core ATen coverage table: every overload of torch's Core ATen opset (the ops tagged
``torch.Tag.core``, what ``torch.export`` decomposes to) and the common non-core aliases that
``torch.export`` keeps, each with its status and a recipe that calls it on random inputs.

Statuses:

- ``converts``: a converter emits jq ops; the tests compare torch eager with jq eager and
  jitted on the recipe's inputs.
- ``folded``: a creation op whose arguments are sizes and numbers; ``from_torch`` evaluates it
  at conversion (a constant), and the tests compare like ``converts``.
- ``refused``: ``from_torch`` raises ``UnsupportedOpError`` with ``reason`` (the tests check the
  message where a recipe can put the op in an exported graph).

``kind`` sorts refused ops into those with no JAX equivalent in a static inference graph
(training, random, data-dependent shapes, strides, complex, out= variants) and ``"todo"``:
ops JAX could express that jq does not convert yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

A = torch.ops.aten

Recipe = Callable[[], tuple[Callable[..., Any], tuple[torch.Tensor, ...]]]


class Entry(NamedTuple):
    """One op overload of the table."""

    op: str  # "aten.add.Tensor"
    status: str  # "converts" | "folded" | "refused"
    reason: str = ""  # refused: what the error says; otherwise a note (or "")
    recipe: Recipe | None = None  # () -> (fn, inputs); fn(*inputs) calls the op
    kind: str = ""  # refused: "training" | "random" | "data-dependent" | ... | "todo"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def r(*shape: int, seed: int = 0) -> torch.Tensor:
    """Standard normal float32 of ``shape``."""
    return torch.randn(*shape, generator=_gen(seed))


def pos(*shape: int, seed: int = 0) -> torch.Tensor:
    """Positive float32 in [0.5, 1.5)."""
    return torch.rand(*shape, generator=_gen(seed)) + 0.5


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    """Float32 in (-0.9, 0.9) (inverse trig and atanh domains)."""
    return (torch.rand(*shape, generator=_gen(seed)) - 0.5) * 1.8


def ints(*shape: int, high: int = 8, seed: int = 0) -> torch.Tensor:
    """int32 in [1, high)."""
    return torch.randint(1, high, shape, generator=_gen(seed), dtype=torch.int32)


def perm(n: int, *lead: int, seed: int = 0) -> torch.Tensor:
    """int64 permutations of ``range(n)`` along the last axis (unique scatter indices)."""
    g = _gen(seed)
    rows = [torch.randperm(n, generator=g) for _ in range(max(1, int(torch.Size(lead).numel())))]
    return torch.stack(rows).reshape(*lead, n)


def _c(fn: Callable[..., Any], *inputs: torch.Tensor) -> Recipe:
    return lambda: (fn, inputs)


def _u(op: Any, make: Callable[..., torch.Tensor] = r, *args: Any) -> Recipe:
    """A unary op on a (2, 3, 4) input made by ``make``, extra arguments after it."""
    return lambda: (lambda x: op(x, *args), (make(2, 3, 4),))


def _b(op: Any, make: Callable[..., torch.Tensor] = r, other: Any = None) -> Recipe:
    """A binary op of two (2, 3, 4) tensors (``other`` given: a number or a (3, 4) tensor)."""
    if other is None:
        return lambda: (lambda x, y: op(x, y), (make(2, 3, 4), make(2, 3, 4, seed=1)))
    return lambda: (lambda x: op(x, other), (make(2, 3, 4),))


def _conv_weight() -> torch.nn.Module:
    m = torch.nn.Module()
    m.weight = torch.nn.Parameter(r(4, 3, 3, 3, seed=5))
    m.bias = torch.nn.Parameter(r(4, seed=6))
    return m


class _WithParams(torch.nn.Module):
    """``fn(self, *inputs)`` with parameters ``params`` (name -> tensor)."""

    def __init__(self, fn: Callable[..., Any], **params: torch.Tensor):
        super().__init__()
        self.fn = fn
        for k, v in params.items():
            setattr(self, k, torch.nn.Parameter(v, requires_grad=False))

    def forward(self, *xs: torch.Tensor) -> Any:
        return self.fn(self, *xs)


def _p(fn: Callable[..., Any], inputs: tuple, **params: torch.Tensor) -> Recipe:
    return lambda: (_WithParams(fn, **params), inputs)


# Scatter indices without duplicates along the scattered axis (torch leaves duplicates' order
# unspecified): (2, 3, 3) for axis 1 of a (2, 4, 3) tensor, (2, 4, 2) for axis 2.
_SCATTER_SRC = perm(4, 2, 3)[..., :3].transpose(1, 2)
_SCATTER_VALUE = perm(3, 2, 4, seed=1)[..., :2]

_TRAINING = "a training-only op (backward or batch statistics); convert the model in eval mode"
_RANDOM = "a random op: a jq graph is deterministic (call model.eval(), or pass the noise in)"
_DATA = "the output's shape or a Python value depends on tensor values (a jq graph is static)"
_STRIDES = "reads memory strides or storage offsets, which jq values do not have"
_COMPLEX = "complex tensors: jq graphs carry real tensors"
_OUT = "an out= variant; torch.export functionalizes models to the out-of-place op"
_TODO = "not converted yet (it has a JAX equivalent)"

_C = "converts"
_F = "folded"
_R = "refused"

CORE: tuple[Entry, ...] = (
    Entry(
        "aten._adaptive_avg_pool2d.default",
        _C,
        recipe=_u(A._adaptive_avg_pool2d.default, r, [2, 3]),
    ),
    Entry(
        "aten._adaptive_avg_pool2d_backward.default",
        _R,
        _TRAINING,
        _c(lambda g, x: A._adaptive_avg_pool2d_backward(g, x), r(1, 2, 2, 2), r(1, 2, 4, 4)),
        "training",
    ),
    Entry(
        "aten._adaptive_avg_pool3d.default",
        _C,
        recipe=_c(lambda x: A._adaptive_avg_pool3d(x, [1, 2, 2]), r(1, 2, 2, 4, 4)),
    ),
    Entry(
        "aten._cdist_forward.default",
        _C,
        recipe=_c(lambda a, b: A._cdist_forward(a, b, 2.0, None), r(2, 4, 3), r(2, 5, 3, seed=1)),
    ),
    Entry(
        "aten._embedding_bag.default",
        _C,
        "the bags (output 0); the other outputs are refused where used",
        _p(
            lambda m, i, o: A._embedding_bag(m.w, i, o, False, 1, False, None, False, 2)[0],
            (torch.tensor([1, 2, 4, 5, 4, 3, 2, 9]), torch.tensor([0, 3, 3, 6])),
            w=r(10, 3),
        ),
    ),
    Entry("aten._fft_c2r.default", _R, _COMPLEX, None, "complex"),
    Entry(
        "aten._fft_r2c.default",
        _R,
        _COMPLEX,
        _c(lambda x: A._fft_r2c(x, [1], 0, True).abs(), r(2, 8)),
        "complex",
    ),
    Entry("aten._local_scalar_dense.default", _R, _DATA, None, "data-dependent"),
    Entry("aten._log_softmax.default", _C, recipe=_u(A._log_softmax.default, r, -1, False)),
    Entry(
        "aten._native_batch_norm_legit.default", _R, _TRAINING, None, "training"
    ),  # exported as _functional
    Entry(
        "aten._native_batch_norm_legit.no_stats",
        _R,
        _TRAINING,
        _p(
            lambda m, x: A._native_batch_norm_legit.no_stats(x, m.w, m.b, True, 0.1, 1e-5)[0],
            (r(2, 3, 4),),
            w=pos(3),
            b=r(3),
        ),
        "training",
    ),
    Entry(
        "aten._native_batch_norm_legit_no_training.default",
        _C,
        recipe=_p(
            lambda m, x: A._native_batch_norm_legit_no_training(x, m.w, m.b, m.rm, m.rv, 0.1, 1e-5)[
                0
            ],
            (r(2, 3, 4),),
            w=pos(3),
            b=r(3),
            rm=r(3),
            rv=pos(3),
        ),
    ),
    Entry(
        "aten._pdist_forward.default", _C, recipe=_c(lambda x: A._pdist_forward(x, 2.0), r(5, 3))
    ),
    Entry("aten._softmax.default", _C, recipe=_u(A._softmax.default, r, 1, False)),
    Entry(
        "aten._to_copy.default",
        _C,
        recipe=_c(lambda x: A._to_copy(x, dtype=torch.int32), r(2, 3) * 4),
    ),
    Entry("aten.abs.default", _C, recipe=_u(A.abs.default)),
    Entry("aten.acos.default", _C, recipe=_u(A.acos.default, unit)),
    Entry("aten.acosh.default", _C, recipe=_u(lambda x: A.acosh(x + 1.0), pos)),
    Entry("aten.add.Scalar", _C, recipe=_b(A.add.Scalar, r, 1.5)),
    Entry("aten.add.Tensor", _C, recipe=_b(A.add.Tensor)),
    Entry(
        "aten.adaptive_avg_pool1d.default",
        _C,
        recipe=_c(lambda x: A.adaptive_avg_pool1d(x, [3]), r(2, 3, 7)),
    ),
    Entry(
        "aten.addmm.default",
        _C,
        recipe=_c(
            lambda b, x, y: A.addmm(b, x, y, beta=0.5, alpha=2.0),
            r(5),
            r(3, 4, seed=1),
            r(4, 5, seed=2),
        ),
    ),
    Entry("aten.alias.default", _C, recipe=_u(lambda x: A.alias(x) + 1)),
    Entry("aten.amax.default", _C, recipe=_u(A.amax.default, r, [1, 2], True)),
    Entry("aten.amin.default", _C, recipe=_u(A.amin.default, r, [0])),
    Entry("aten.any.default", _C, recipe=_u(lambda x: A.any.default(x > 1.0))),
    Entry("aten.any.dim", _C, recipe=_u(lambda x: A.any.dim(x > 1.0, 1, True))),
    Entry("aten.any.dims", _C, recipe=_u(lambda x: A.any.dims(x > 1.0, [1, 2]))),
    Entry(
        "aten.arange.start_step",
        _F,
        "folded at conversion (its arguments are numbers)",
        _u(lambda x: x + A.arange.start_step(0, 4, 1, dtype=torch.float32)),
    ),
    Entry("aten.argmax.default", _C, recipe=_u(A.argmax.default, r, 1, True)),
    Entry("aten.argmin.default", _C, recipe=_u(A.argmin.default, r, 2)),
    Entry(
        "aten.as_strided.default",
        _C,
        "of a contiguous tensor (a constant gather)",
        _c(lambda x: A.as_strided(x, [3, 2], [1, 3], 1), r(3, 4)),
    ),
    Entry("aten.asin.default", _C, recipe=_u(A.asin.default, unit)),
    Entry("aten.asinh.default", _C, recipe=_u(A.asinh.default)),
    Entry("aten.atan.default", _C, recipe=_u(A.atan.default)),
    Entry("aten.atan2.default", _C, recipe=_b(A.atan2.default)),
    Entry("aten.atan2.out", _R, _OUT, None, "out="),
    Entry("aten.atanh.default", _C, recipe=_u(A.atanh.default, unit)),
    Entry(
        "aten.avg_pool1d.default",
        _C,
        recipe=_c(lambda x: A.avg_pool1d(x, [3], [2], [1]), r(2, 3, 8)),
    ),
    Entry(
        "aten.avg_pool2d.default",
        _C,
        recipe=_c(lambda x: A.avg_pool2d(x, [3, 3], [2, 2], [1, 1], True, False), r(1, 2, 7, 7)),
    ),
    Entry(
        "aten.avg_pool2d_backward.default",
        _R,
        _TRAINING,
        _c(
            lambda g, x: A.avg_pool2d_backward(g, x, [2, 2], [2, 2], [0, 0], False, True, None),
            r(1, 2, 2, 2),
            r(1, 2, 4, 4),
        ),
        "training",
    ),
    Entry(
        "aten.avg_pool3d.default",
        _C,
        recipe=_c(lambda x: A.avg_pool3d(x, [2, 2, 2], [2, 2, 2]), r(1, 2, 4, 4, 4)),
    ),
    Entry(
        "aten.bitwise_and.Scalar",
        _C,
        recipe=_c(lambda x: A.bitwise_and.Scalar(x, 6), ints(2, 3, 4)),
    ),
    Entry(
        "aten.bitwise_and.Tensor",
        _C,
        recipe=_c(lambda x, y: A.bitwise_and.Tensor(x, y), ints(2, 3, 4), ints(2, 3, 4, seed=1)),
    ),
    Entry("aten.bitwise_not.default", _C, recipe=_c(lambda x: A.bitwise_not(x), ints(2, 3, 4))),
    Entry(
        "aten.bitwise_or.Scalar", _C, recipe=_c(lambda x: A.bitwise_or.Scalar(x, 5), ints(2, 3, 4))
    ),
    Entry(
        "aten.bitwise_or.Tensor",
        _C,
        recipe=_c(lambda x, y: A.bitwise_or.Tensor(x > 0, y > 0), r(2, 3, 4), r(2, 3, 4, seed=1)),
    ),
    Entry(
        "aten.bitwise_xor.Scalar",
        _C,
        recipe=_c(lambda x: A.bitwise_xor.Scalar(x, 3), ints(2, 3, 4)),
    ),
    Entry(
        "aten.bitwise_xor.Tensor",
        _C,
        recipe=_c(lambda x, y: A.bitwise_xor.Tensor(x, y), ints(2, 3, 4), ints(2, 3, 4, seed=1)),
    ),
    Entry("aten.bmm.default", _C, recipe=_c(A.bmm.default, r(2, 3, 4), r(2, 4, 5, seed=1))),
    Entry(
        "aten.cat.default", _C, recipe=_c(lambda x, y: A.cat([x, y], 1), r(2, 3), r(2, 2, seed=1))
    ),
    Entry("aten.ceil.default", _C, recipe=_u(lambda x: A.ceil(x * 3))),
    Entry(
        "aten.clamp.Tensor",
        _C,
        recipe=_c(
            lambda x, lo, hi: A.clamp.Tensor(x, lo, hi),
            r(2, 3),
            r(2, 3, seed=1) - 0.5,
            r(2, 3, seed=2) + 0.5,
        ),
    ),
    Entry("aten.clamp.default", _C, recipe=_u(A.clamp.default, r, -0.5, 0.7)),
    Entry("aten.clone.default", _C, recipe=_u(lambda x: A.clone(x) * 2)),
    Entry(
        "aten.col2im.default",
        _C,
        recipe=_c(lambda x: A.col2im(x, [5, 6], [2, 3], [1, 1], [1, 0], [2, 1]), r(2, 18, 12)),
    ),
    Entry(
        "aten.constant_pad_nd.default",
        _C,
        recipe=_u(A.constant_pad_nd.default, r, [1, 2, 0, 1], 0.5),
    ),
    Entry(
        "aten.convolution.default",
        _C,
        recipe=_p(
            lambda m, x: A.convolution(x, m.w, m.b, [2, 1], [1, 1], [1, 1], False, [0, 0], 1),
            (r(1, 3, 6, 6),),
            w=r(4, 3, 3, 3, seed=5),
            b=r(4, seed=6),
        ),
    ),
    Entry("aten.convolution_backward.default", _R, _TRAINING, None, "training"),
    Entry("aten.copy.default", _C, recipe=_c(lambda x, y: A.copy(x, y), r(2, 3), r(3, seed=1))),
    Entry("aten.cos.default", _C, recipe=_u(A.cos.default)),
    Entry("aten.cosh.default", _C, recipe=_u(A.cosh.default)),
    Entry("aten.cumsum.default", _C, recipe=_u(A.cumsum.default, r, 1)),
    Entry("aten.diagonal.default", _C, recipe=_u(A.diagonal.default, r, 1, 1, 2)),
    Entry("aten.div.Scalar", _C, recipe=_b(A.div.Scalar, r, 3.0)),
    Entry(
        "aten.div.Scalar_mode",
        _C,
        recipe=_c(lambda x: A.div.Scalar_mode(x * 4, 3.0, rounding_mode="floor"), r(2, 3, 4)),
    ),
    Entry("aten.div.Tensor", _C, recipe=_c(A.div.Tensor, r(2, 3, 4), pos(2, 3, 4, seed=1))),
    Entry(
        "aten.div.Tensor_mode",
        _C,
        recipe=_c(
            lambda x, y: A.div.Tensor_mode(x * 4, y, rounding_mode="trunc"),
            r(2, 3, 4),
            pos(2, 3, 4, seed=1),
        ),
    ),
    Entry("aten.elu.default", _C, recipe=_u(A.elu.default, r, 0.7, 1.2, 0.9)),
    Entry(
        "aten.embedding.default",
        _C,
        recipe=_p(
            lambda m, i: A.embedding(m.w, i), (torch.tensor([[1, 4, 0], [2, 2, 3]]),), w=r(5, 3)
        ),
    ),
    Entry(
        "aten.embedding_dense_backward.default",
        _R,
        _TRAINING,
        _c(
            lambda g, i: A.embedding_dense_backward(g, i, 5, -1, False),
            r(2, 3),
            torch.tensor([1, 4]),
        ),
        "training",
    ),
    Entry(
        "aten.empty.memory_format",
        _F,
        "folded at conversion (its arguments are sizes)",
        _u(lambda x: x + A.empty.memory_format([2, 3, 4]).fill_(0.5)),
    ),
    Entry(
        "aten.empty_strided.default",
        _F,
        "folded at conversion (its arguments are sizes)",
        _u(lambda x: x + A.empty_strided([2, 3, 4], [12, 4, 1]).fill_(0.5)),
    ),
    Entry("aten.eq.Scalar", _C, recipe=_c(lambda x: A.eq.Scalar(x, 3), ints(2, 3, 4))),
    Entry("aten.eq.Tensor", _C, recipe=_c(A.eq.Tensor, ints(2, 3, 4), ints(2, 3, 4, seed=1))),
    Entry("aten.erf.default", _C, recipe=_u(A.erf.default)),
    Entry("aten.exp.default", _C, recipe=_u(A.exp.default)),
    Entry("aten.expand.default", _C, recipe=_c(lambda x: A.expand(x, [2, 4, 3]), r(2, 1, 3))),
    Entry("aten.expm1.default", _C, recipe=_u(A.expm1.default)),
    Entry("aten.fill.Scalar", _C, recipe=_u(lambda x: A.fill.Scalar(x, 0.25) + x)),
    Entry("aten.flip.default", _C, recipe=_u(A.flip.default, r, [1, 2])),
    Entry("aten.floor.default", _C, recipe=_u(lambda x: A.floor(x * 3))),
    Entry("aten.fmod.Scalar", _C, recipe=_b(lambda x, y: A.fmod.Scalar(x * 4, y), r, 1.5)),
    Entry(
        "aten.fmod.Tensor",
        _C,
        recipe=_c(lambda x, y: A.fmod.Tensor(x * 4, y), r(2, 3, 4), pos(2, 3, 4, seed=1)),
    ),
    Entry(
        "aten.full.default",
        _F,
        "folded at conversion (its arguments are numbers)",
        _u(lambda x: x + A.full.default([2, 3, 4], 0.5)),
    ),
    Entry(
        "aten.full_like.default",
        _C,
        "folded at conversion when its input's shape is static",
        _u(lambda x: A.full_like(x, 0.5) + x),
    ),
    Entry(
        "aten.gather.default",
        _C,
        recipe=_c(
            lambda x, i: A.gather(x, 1, i),
            r(2, 5, 3),
            torch.tensor([[[0, 4, 1], [3, 3, 2]], [[1, 0, 4], [2, 1, 0]]]),
        ),
    ),
    Entry("aten.ge.Scalar", _C, recipe=_b(A.ge.Scalar, r, 0.1)),
    Entry("aten.ge.Tensor", _C, recipe=_b(A.ge.Tensor)),
    Entry("aten.gelu.default", _C, recipe=_u(lambda x: A.gelu.default(x, approximate="tanh"))),
    Entry(
        "aten.grid_sampler_2d.default",
        _C,
        "bilinear and nearest, zeros and border padding (bicubic, reflection refused)",
        _c(
            lambda x, g: A.grid_sampler_2d(x, g, 0, 0, False), r(2, 3, 4, 5), unit(2, 3, 6, 2) * 1.2
        ),
    ),
    Entry("aten.gt.Scalar", _C, recipe=_b(A.gt.Scalar, r, 0.1)),
    Entry("aten.gt.Tensor", _C, recipe=_b(A.gt.Tensor)),
    Entry("aten.hardtanh.default", _C, recipe=_u(A.hardtanh.default, r, -0.5, 0.8)),
    Entry(
        "aten.index.Tensor",
        _C,
        recipe=_c(lambda x, i: A.index.Tensor(x, [None, i]), r(2, 5, 3), torch.tensor([4, 0, 2])),
    ),
    Entry(
        "aten.index_put.default",
        _C,
        recipe=_c(
            lambda x, v: A.index_put(x, [None, torch.tensor([3, 0])], v, True),
            r(2, 4, 3),
            r(3, seed=1),
        ),
    ),
    Entry(
        "aten.index_select.default",
        _C,
        recipe=_c(lambda x, i: A.index_select(x, 1, i), r(2, 5, 3), torch.tensor([4, 0, 2, 2])),
    ),
    Entry("aten.isinf.default", _C, recipe=_u(lambda x: A.isinf(1.0 / (x > 0.5).float() - 1))),
    Entry("aten.isnan.default", _C, recipe=_u(lambda x: A.isnan(torch.log(x)))),
    Entry("aten.le.Scalar", _C, recipe=_b(A.le.Scalar, r, 0.1)),
    Entry("aten.le.Tensor", _C, recipe=_b(A.le.Tensor)),
    Entry("aten.leaky_relu.default", _C, recipe=_u(A.leaky_relu.default, r, 0.2)),
    Entry("aten.log.default", _C, recipe=_u(A.log.default, pos)),
    Entry("aten.log10.default", _C, recipe=_u(A.log10.default, pos)),
    Entry("aten.log1p.default", _C, recipe=_u(A.log1p.default, pos)),
    Entry("aten.log2.default", _C, recipe=_u(A.log2.default, pos)),
    Entry("aten.logical_and.default", _C, recipe=_b(lambda x, y: A.logical_and(x > 0, y))),
    Entry("aten.logical_not.default", _C, recipe=_u(lambda x: A.logical_not(x.round()))),
    Entry("aten.logical_or.default", _C, recipe=_b(lambda x, y: A.logical_or(x > 0, y > 0))),
    Entry("aten.logical_xor.default", _C, recipe=_b(lambda x, y: A.logical_xor(x > 0, y > 0))),
    Entry("aten.lt.Scalar", _C, recipe=_b(A.lt.Scalar, r, 0.1)),
    Entry("aten.lt.Tensor", _C, recipe=_b(A.lt.Tensor)),
    Entry(
        "aten.masked_scatter.default",
        _C,
        recipe=_c(lambda x, s: A.masked_scatter(x, x > 0, s), r(2, 3, 4), r(24, seed=1)),
    ),
    Entry("aten.max.dim", _C, recipe=_u(lambda x: A.max.dim(x, 1, True))),
    Entry(
        "aten.max_pool2d_with_indices.default",
        _C,
        "the values; the indices output is refused",
        _c(lambda x: A.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1])[0], r(1, 2, 7, 7)),
    ),
    Entry("aten.max_pool2d_with_indices_backward.default", _R, _TRAINING, None, "training"),
    Entry(
        "aten.max_pool3d_with_indices.default",
        _C,
        "the values; the indices output is refused",
        _c(lambda x: A.max_pool3d_with_indices(x, [2, 2, 2], [2, 2, 2])[0], r(1, 2, 4, 4, 4)),
    ),
    Entry("aten.maximum.default", _C, recipe=_b(A.maximum.default)),
    Entry("aten.mean.default", _C, recipe=_u(A.mean.default)),
    Entry("aten.mean.dim", _C, recipe=_u(A.mean.dim, r, [0, 2], True)),
    Entry("aten.min.dim", _C, recipe=_u(lambda x: A.min.dim(x, 2))),
    Entry("aten.minimum.default", _C, recipe=_b(A.minimum.default)),
    Entry("aten.mm.default", _C, recipe=_c(A.mm.default, r(3, 4), r(4, 5, seed=1))),
    Entry("aten.mul.Scalar", _C, recipe=_b(A.mul.Scalar, r, -1.5)),
    Entry("aten.mul.Tensor", _C, recipe=_b(A.mul.Tensor)),
    Entry(
        "aten.native_dropout.default",
        _C,
        "train=False (eval); train=True is refused",
        _u(lambda x: A.native_dropout(x, 0.5, False)[0]),
    ),
    Entry(
        "aten.native_group_norm.default",
        _C,
        recipe=_p(
            lambda m, x: A.native_group_norm(x, m.w, m.b, 2, 4, 6, 2, 1e-5)[0],
            (r(2, 4, 6),),
            w=pos(4),
            b=r(4),
        ),
    ),
    Entry("aten.native_group_norm_backward.default", _R, _TRAINING, None, "training"),
    Entry(
        "aten.native_layer_norm.default",
        _C,
        recipe=_p(
            lambda m, x: A.native_layer_norm(x, [4], m.w, m.b, 1e-5)[0],
            (r(2, 3, 4),),
            w=pos(4),
            b=r(4),
        ),
    ),
    Entry("aten.native_layer_norm_backward.default", _R, _TRAINING, None, "training"),
    Entry("aten.ne.Scalar", _C, recipe=_c(lambda x: A.ne.Scalar(x, 3), ints(2, 3, 4))),
    Entry("aten.ne.Tensor", _C, recipe=_c(A.ne.Tensor, ints(2, 3, 4), ints(2, 3, 4, seed=1))),
    Entry("aten.neg.default", _C, recipe=_u(A.neg.default)),
    Entry(
        "aten.nonzero.default", _R, _DATA, _u(lambda x: A.nonzero(x > 0).sum()), "data-dependent"
    ),
    Entry("aten.permute.default", _C, recipe=_u(A.permute.default, r, [2, 0, 1])),
    Entry("aten.pow.Scalar", _C, recipe=_u(lambda x: A.pow.Scalar(2.5, x))),
    Entry("aten.pow.Tensor_Scalar", _C, recipe=_u(A.pow.Tensor_Scalar, pos, 1.7)),
    Entry("aten.pow.Tensor_Tensor", _C, recipe=_b(A.pow.Tensor_Tensor, pos)),
    Entry("aten.prod.default", _C, recipe=_u(A.prod.default, pos)),
    Entry("aten.prod.dim_int", _C, recipe=_u(A.prod.dim_int, pos, 1, True)),
    Entry("aten.rand.default", _R, _RANDOM, _u(lambda x: x + A.rand.default([2, 3, 4])), "random"),
    Entry(
        "aten.randn.default", _R, _RANDOM, _u(lambda x: x + A.randn.default([2, 3, 4])), "random"
    ),
    Entry("aten.randperm.default", _R, _RANDOM, _u(lambda x: x + A.randperm.default(4)), "random"),
    Entry("aten.reciprocal.default", _C, recipe=_u(A.reciprocal.default, pos)),
    Entry(
        "aten.reflection_pad1d.default",
        _C,
        recipe=_c(lambda x: A.reflection_pad1d(x, [2, 1]), r(2, 3, 5)),
    ),
    Entry(
        "aten.reflection_pad2d.default",
        _C,
        recipe=_c(lambda x: A.reflection_pad2d(x, [1, 2, 2, 0]), r(1, 2, 4, 5)),
    ),
    Entry(
        "aten.reflection_pad3d.default",
        _C,
        recipe=_c(lambda x: A.reflection_pad3d(x, [1, 1, 0, 1, 1, 0]), r(1, 2, 3, 3, 3)),
    ),
    Entry("aten.relu.default", _C, recipe=_u(A.relu.default)),
    Entry(
        "aten.remainder.Scalar", _C, recipe=_b(lambda x, y: A.remainder.Scalar(x * 4, y), r, 1.5)
    ),
    Entry(
        "aten.remainder.Tensor",
        _C,
        recipe=_c(lambda x, y: A.remainder.Tensor(x * 4, y), r(2, 3, 4), pos(2, 3, 4, seed=1)),
    ),
    Entry("aten.repeat.default", _C, recipe=_u(A.repeat.default, r, [1, 2, 1, 3])),
    Entry(
        "aten.replication_pad2d.default",
        _C,
        recipe=_c(lambda x: A.replication_pad2d(x, [1, 2, 2, 0]), r(1, 2, 4, 5)),
    ),
    Entry(
        "aten.replication_pad3d.default",
        _C,
        recipe=_c(lambda x: A.replication_pad3d(x, [1, 1, 0, 1, 1, 0]), r(1, 2, 3, 3, 3)),
    ),
    Entry(
        "aten.resize_.default",
        _R,
        "an in-place op on storage; torch.export functionalizes models (resize_ is not captured)",
        None,
        "in-place",
    ),
    Entry("aten.round.default", _C, recipe=_u(lambda x: A.round.default(x * 3))),
    Entry("aten.rsqrt.default", _C, recipe=_u(A.rsqrt.default, pos)),
    Entry(
        "aten.scalar_tensor.default",
        _F,
        "folded at conversion (its argument is a number)",
        _u(lambda x: x * A.scalar_tensor(1.5)),
    ),
    Entry(
        "aten.scatter.src",
        _C,
        recipe=_c(
            lambda x, s: A.scatter.src(x, 1, _SCATTER_SRC, s),
            r(2, 4, 3),
            r(2, 3, 3, seed=1),
        ),
    ),
    Entry(
        "aten.scatter.value",
        _C,
        recipe=_c(lambda x: A.scatter.value(x, 2, _SCATTER_VALUE, -2.0), r(2, 4, 3)),
    ),
    Entry(
        "aten.scatter_add.default",
        _C,
        recipe=_c(
            lambda x, s: A.scatter_add(x, 0, torch.tensor([[0, 1, 0], [0, 0, 1]]), s),
            r(2, 3),
            r(2, 3, seed=1),
        ),
    ),
    Entry(
        "aten.scatter_reduce.two",
        _C,
        recipe=_c(
            lambda x, s: A.scatter_reduce.two(
                x, 0, torch.tensor([[0, 1, 0], [0, 0, 1]]), s, "amax", include_self=False
            ),
            r(2, 3),
            r(2, 3, seed=1),
        ),
    ),
    Entry("aten.select.int", _C, recipe=_u(A.select.int, r, 1, -1)),
    Entry(
        "aten.select_scatter.default",
        _C,
        recipe=_c(lambda x, s: A.select_scatter(x, s, 1, 2), r(2, 4, 3), r(2, 3, seed=1)),
    ),
    Entry("aten.sigmoid.default", _C, recipe=_u(A.sigmoid.default)),
    Entry("aten.sign.default", _C, recipe=_u(lambda x: A.sign(x.round()))),
    Entry("aten.sin.default", _C, recipe=_u(A.sin.default)),
    Entry("aten.sinh.default", _C, recipe=_u(A.sinh.default)),
    Entry("aten.slice.Tensor", _C, recipe=_u(A.slice.Tensor, r, 2, 1, 4, 2)),
    Entry(
        "aten.slice_scatter.default",
        _C,
        recipe=_c(lambda x, s: A.slice_scatter(x, s, 1, 1, 3), r(2, 4, 3), r(2, 2, 3, seed=1)),
    ),
    Entry("aten.sort.default", _C, recipe=_u(lambda x: A.sort.default(x, 1, True))),
    Entry(
        "aten.split_with_sizes.default", _C, recipe=_u(lambda x: A.split_with_sizes(x, [1, 3], 2))
    ),
    Entry("aten.sqrt.default", _C, recipe=_u(A.sqrt.default, pos)),
    Entry("aten.squeeze.dim", _C, recipe=_c(lambda x: A.squeeze.dim(x, 1), r(2, 1, 4))),
    Entry("aten.squeeze.dims", _C, recipe=_c(lambda x: A.squeeze.dims(x, [1, 3]), r(2, 1, 4, 1))),
    Entry("aten.sub.Scalar", _C, recipe=_b(A.sub.Scalar, r, 0.5)),
    Entry(
        "aten.sub.Tensor",
        _C,
        recipe=_c(lambda x, y: A.sub.Tensor(x, y, alpha=2), r(2, 3, 4), r(2, 3, 4, seed=1)),
    ),
    Entry("aten.sum.dim_IntList", _C, recipe=_u(A.sum.dim_IntList, r, [1], True)),
    Entry(
        "aten.sym_numel.default",
        _C,
        "a size derived from the batch (reshape's -1); untested: torch.export computes numel "
        "from sym_size and does not emit it",
        None,
    ),
    Entry(
        "aten.sym_size.int",
        _C,
        "the dynamic batch size, in reshape / expand / arange",
        _u(lambda x: x.view(x.size(0), -1)),
    ),
    Entry("aten.sym_is_contiguous.default", _R, _STRIDES, None, "strides"),
    Entry("aten.sym_storage_offset.default", _R, _STRIDES, None, "strides"),
    Entry("aten.sym_stride.int", _R, _STRIDES, None, "strides"),
    Entry("aten.tan.default", _C, recipe=_u(A.tan.default, unit)),
    Entry("aten.tanh.default", _C, recipe=_u(A.tanh.default)),
    Entry("aten.topk.default", _C, recipe=_u(lambda x: A.topk(x, 2, 1, False))),
    Entry("aten.trunc.default", _C, recipe=_u(lambda x: A.trunc(x * 3))),
    Entry("aten.unsqueeze.default", _C, recipe=_u(A.unsqueeze.default, r, 1)),
    Entry(
        "aten.upsample_bilinear2d.vec",
        _C,
        recipe=_c(lambda x: A.upsample_bilinear2d.vec(x, [5, 7], False, None), r(1, 2, 3, 4)),
    ),
    Entry(
        "aten.upsample_nearest2d.vec",
        _C,
        recipe=_c(lambda x: A.upsample_nearest2d.vec(x, None, [2.0, 2.0]), r(1, 2, 3, 4)),
    ),
    Entry(
        "aten.var.correction",
        _C,
        recipe=_u(lambda x: A.var.correction(x, [1, 2], correction=0, keepdim=True)),
    ),
    Entry("aten.var.dim", _C, recipe=_u(A.var.dim, r, [1], True)),
    Entry("aten.view.default", _C, recipe=_u(A.view.default, r, [6, 4])),
    Entry(
        "aten.where.self",
        _C,
        recipe=_c(lambda x, y: A.where.self(x > 0, x, y), r(2, 3, 4), r(3, 4, seed=1)),
    ),
)

# The non-core aliases and overloads torch.export keeps (``run_decompositions({})`` leaves
# them), as users write them: onnx2torch's HardSigmoid is ``torch.clip(x * a + b, 0, 1)``.
ALIASES: tuple[Entry, ...] = (
    Entry("aten.clip.default", _C, recipe=_u(lambda x: torch.clip(x * 0.2 + 0.5, 0, 1))),
    Entry("aten.clip.Tensor", _C, recipe=_b(lambda x, y: torch.clip(x, -y.abs(), y.abs()))),
    Entry("aten.clamp_min.default", _C, recipe=_u(lambda x: torch.clamp_min(x, 0.1))),
    Entry("aten.clamp_min.Tensor", _C, recipe=_b(torch.clamp_min)),
    Entry("aten.clamp_max.default", _C, recipe=_u(lambda x: torch.clamp_max(x, 0.1))),
    Entry("aten.clamp_max.Tensor", _C, recipe=_b(torch.clamp_max)),
    Entry(
        "aten.true_divide.Tensor",
        _C,
        recipe=_c(torch.true_divide, r(2, 3, 4), pos(2, 3, 4, seed=1)),
    ),
    Entry(
        "aten.floor_divide.default",
        _C,
        recipe=_c(lambda x, y: torch.floor_divide(x * 4, y), r(2, 3, 4), pos(2, 3, 4, seed=1)),
    ),
    Entry("aten.rsub.Scalar", _C, recipe=_u(lambda x: 1 - x)),
    Entry(
        "aten.hardsigmoid.default", _C, recipe=_u(lambda x: torch.nn.functional.hardsigmoid(x * 3))
    ),
    Entry("aten.hardswish.default", _C, recipe=_u(lambda x: torch.nn.functional.hardswish(x * 3))),
    Entry("aten.relu6.default", _C, recipe=_u(lambda x: torch.nn.functional.relu6(x * 4))),
    Entry("aten.silu.default", _C, recipe=_u(torch.nn.functional.silu)),
    Entry("aten.mish.default", _C, recipe=_u(torch.nn.functional.mish)),
    Entry(
        "aten.softplus.default",
        _C,
        recipe=_u(lambda x: torch.nn.functional.softplus(x * 10, 2.0, 5.0)),
    ),
    Entry("aten.selu.default", _C, recipe=_u(torch.nn.functional.selu)),
    Entry("aten.celu.default", _C, recipe=_u(lambda x: torch.nn.functional.celu(x, 0.5))),
    Entry("aten.log_sigmoid.default", _C, recipe=_u(torch.nn.functional.logsigmoid)),
    Entry("aten.glu.default", _C, recipe=_u(lambda x: torch.nn.functional.glu(x, -1))),
    Entry(
        "aten.prelu.default",
        _C,
        recipe=_p(lambda m, x: torch.nn.functional.prelu(x, m.w), (r(2, 3, 4),), w=pos(3) * 0.2),
    ),
    Entry("aten.log_softmax.int", _C, recipe=_u(lambda x: torch.log_softmax(x, 1))),
    Entry("aten.square.default", _C, recipe=_u(torch.square)),
    Entry("aten.exp2.default", _C, recipe=_u(torch.exp2)),
    Entry("aten.erfc.default", _C, recipe=_u(torch.erfc)),
    Entry("aten.frac.default", _C, recipe=_u(lambda x: torch.frac(x * 3))),
    Entry("aten.round.decimals", _C, recipe=_u(lambda x: torch.round(x * 30, decimals=1))),
    Entry("aten.sum.default", _C, recipe=_u(torch.sum)),
    Entry("aten.max.default", _C, recipe=_u(torch.max)),
    Entry("aten.min.default", _C, recipe=_u(torch.min)),
    Entry("aten.max.other", _C, recipe=_b(torch.max)),
    Entry("aten.min.other", _C, recipe=_b(torch.min)),
    Entry("aten.all.default", _C, recipe=_u(lambda x: (x > -1.5).all())),
    Entry("aten.all.dim", _C, recipe=_u(lambda x: (x > -0.5).all(1))),
    Entry("aten.std.dim", _C, recipe=_u(lambda x: x.std(1))),
    Entry("aten.std.correction", _C, recipe=_u(lambda x: torch.std(x, (0, 2), correction=2))),
    Entry("aten.logsumexp.default", _C, recipe=_u(lambda x: torch.logsumexp(x * 5, 1))),
    Entry("aten.cumprod.default", _C, recipe=_u(lambda x: torch.cumprod(x, 2))),
    Entry("aten.tril.default", _C, recipe=_u(lambda x: torch.tril(x, -1))),
    Entry("aten.triu.default", _C, recipe=_u(lambda x: torch.triu(x, 1))),
    Entry(
        "aten.repeat_interleave.self_int", _C, recipe=_u(lambda x: x.repeat_interleave(2, dim=1))
    ),
    Entry(
        "aten.pad.default",
        _C,
        "constant, reflect, replicate and circular modes",
        _c(lambda x: torch.nn.functional.pad(x, (1, 2, 2, 1), mode="circular"), r(1, 2, 4, 5)),
    ),
    Entry(
        "aten.cdist.default",
        _C,
        recipe=_c(lambda a, b: torch.cdist(a, b, p=1.0), r(2, 4, 3), r(2, 5, 3, seed=1)),
    ),
    Entry("aten.sgn.default", _C, recipe=_u(lambda x: torch.sgn(x.round()))),
    Entry("aten.fmax.default", _C, recipe=_b(torch.fmax)),
    Entry("aten.fmin.default", _C, recipe=_b(torch.fmin)),
    Entry("aten.hypot.default", _C, recipe=_b(torch.hypot)),
    Entry("aten.einsum.default", _C, recipe=_b(lambda x, y: torch.einsum("bij,bkj->bik", x, y))),
    Entry("aten.outer.default", _C, recipe=_c(torch.outer, r(3), r(4, seed=1))),
    Entry(
        "aten.baddbmm.default",
        _C,
        recipe=_c(
            lambda a, b, c: torch.baddbmm(a, b, c, beta=0.5, alpha=2.0),
            r(2, 3, 5),
            r(2, 3, 4, seed=1),
            r(2, 4, 5, seed=2),
        ),
    ),
    Entry("aten.lerp.Scalar", _C, recipe=_b(lambda x, y: torch.lerp(x, y, 0.3))),
    Entry("aten.lerp.Tensor", _C, recipe=_b(lambda x, y: torch.lerp(x, y, y.sigmoid()))),
    Entry(
        "aten.addcdiv.default", _C, recipe=_b(lambda x, y: torch.addcdiv(x, x, y.exp(), value=0.5))
    ),
    Entry(
        "aten.type_as.default",
        _C,
        recipe=_c(lambda x, i: (x * 4).type_as(i) + i, r(2, 3), ints(2, 3)),
    ),
    Entry(
        "aten.grid_sampler.default",
        _C,
        "as grid_sampler_2d (4-d inputs)",
        _c(
            lambda x, g: torch.nn.functional.grid_sample(x, g, "nearest", "border", True),
            r(2, 3, 4, 5),
            unit(2, 3, 6, 2) * 1.2,
        ),
    ),
    Entry(
        "aten.embedding_bag.padding_idx",
        _C,
        "as _embedding_bag (nn.EmbeddingBag)",
        _p(
            lambda m, i, o: torch.nn.functional.embedding_bag(
                i, m.w, o, mode="max", padding_idx=2, include_last_offset=True
            ),
            (torch.tensor([1, 2, 4, 5, 4, 3, 2, 9]), torch.tensor([0, 3, 3, 8])),
            w=r(10, 3),
        ),
    ),
)

TABLE: dict[str, Entry] = {e.op: e for e in (*CORE, *ALIASES)}

REFUSED: dict[str, str] = {e.op: e.reason for e in TABLE.values() if e.status == _R}


def core_ops() -> list[str]:
    """Every overload of torch's Core ATen opset (tagged ``torch.Tag.core``), sorted.

    From every registered schema: ``dir(torch.ops.aten)`` lists only the packets loaded so far.
    """
    out = set()
    for schema in torch._C._jit_get_all_schemas():
        ns, _, name = schema.name.partition("::")
        if ns != "aten":
            continue
        packet = getattr(torch.ops.aten, name, None)
        overload = getattr(packet, schema.overload_name or "default", None)
        if isinstance(overload, torch._ops.OpOverload) and torch.Tag.core in overload.tags:
            out.add(str(overload))
    return sorted(out)
