"""Seeded input generators shared by the parity suite and the benchmark.

Every case is a pure function of its arguments (kind, shape, seed): the same call gives the same
arrays on every machine (NumPy's PCG64 ``default_rng``). No MCT, JAX or torch import here.

Kinds (issue 2, item 4):
  gaussian, laplace, uniform, student_t (heavy-tailed, df=3), outliers (gaussian plus a few
  values 20-40 sigma out), all_positive, relu, gelu, silu, tanh, sigmoid (activation-like:
  the function applied to gaussian pre-activations), constant, near_zero (all zeros but a few
  tiny values).
Weight shapes: conv (16, 8, 3, 3), depthwise (32, 1, 3, 3), linear (24, 40), torch layout,
output channels on axis 0.
"""

from __future__ import annotations

import hashlib
import math
from typing import NamedTuple

import numpy as np

KINDS = (
    "gaussian",
    "laplace",
    "uniform",
    "student_t",
    "outliers",
    "all_positive",
    "relu",
    "gelu",
    "silu",
    "tanh",
    "sigmoid",
    "constant",
    "near_zero",
)
SHAPES = {"conv": (16, 8, 3, 3), "depthwise": (32, 1, 3, 3), "linear": (24, 40)}
N_BITS = (2, 4, 8)


def _erf(x: np.ndarray) -> np.ndarray:
    # Vectorised math.erf; NumPy has no erf and SciPy is not a dependency.
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _seed(*parts) -> int:
    # Stable across processes (unlike hash()): the seed depends only on the printed parts.
    # A digest of the whole text: the first bytes alone (little-endian, mod 2**63) would give
    # every shape and seed of a kind the same stream.
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def sample(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Draw a float64 array of ``kind`` with unit-ish scale.

    Args:
      kind: one of :data:`KINDS`.
      shape: output shape.
      rng: NumPy generator (consumed).

    Returns:
      float64 array of ``shape``.
    """
    size = int(np.prod(shape))
    g = rng.standard_normal(size)
    if kind == "gaussian":
        x = g
    elif kind == "laplace":
        x = rng.laplace(0.0, 1.0, size)
    elif kind == "uniform":
        x = rng.uniform(-1.0, 1.0, size) + rng.uniform(-0.3, 0.3)  # off-centre
    elif kind == "student_t":
        x = rng.standard_t(3.0, size)
    elif kind == "outliers":
        x = g.copy()
        k = max(1, size // 500)
        idx = rng.choice(size, k, replace=False)
        x[idx] = rng.choice([-1.0, 1.0], k) * rng.uniform(20.0, 40.0, k)
    elif kind == "all_positive":
        x = rng.gamma(2.0, 0.5, size) + 0.05
    elif kind == "relu":
        x = np.maximum(g + 0.2, 0.0)
    elif kind == "gelu":
        x = _gelu(1.5 * g)
    elif kind == "silu":
        y = 2.0 * g
        x = y * _sigmoid(y)
    elif kind == "tanh":
        x = np.tanh(1.5 * g + 0.3)
    elif kind == "sigmoid":
        x = _sigmoid(2.0 * g)
    elif kind == "constant":
        x = np.full(size, 0.37)
    elif kind == "near_zero":
        x = np.zeros(size)
        k = max(2, size // 200)
        idx = rng.choice(size, k, replace=False)
        x[idx] = rng.standard_normal(k) * 1e-3
    else:
        raise ValueError(f"cases.sample: unknown kind={kind!r}; expected one of {KINDS}")
    return x.reshape(shape)


class WeightCase(NamedTuple):
    """One weight tensor with its injected HMSE scores."""

    name: str
    kind: str
    tensor: np.ndarray  # float32, torch layout, output channels on axis 0
    hessian: np.ndarray  # float64, positive, tensor's shape


def weight_case(kind: str, shape: tuple[int, ...], seed: int = 0) -> WeightCase:
    """A seeded weight tensor: kaiming-like scale, per-output-channel scale spread.

    Per-channel scales vary by up to 4x (as in trained conv layers) except for the constant and
    near-zero kinds, whose point is the exact value. HMSE scores are log-normal (positive,
    spread over ~2 decades).
    """
    rng = np.random.default_rng(_seed("w", kind, shape, seed))
    x = sample(kind, shape, rng)
    if kind not in ("constant", "near_zero"):
        fan_in = int(np.prod(shape[1:]))
        ch = rng.uniform(0.5, 2.0, (shape[0],) + (1,) * (len(shape) - 1))
        x = x * ch * math.sqrt(2.0 / fan_in)
    hessian = np.exp(rng.normal(0.0, 1.0, shape))
    name = f"{kind}-{'x'.join(map(str, shape))}-s{seed}"
    return WeightCase(name, kind, x.astype(np.float32), hessian)


def resnet18_weight_shapes() -> list[tuple[int, ...]]:
    """Shapes of every conv / linear weight of torchvision's resnet18 (torch layout), 21 tensors.

    Listed inline so the benchmark needs no torchvision; conv1, 4 stages x 2 BasicBlocks (two
    3x3 convs each, plus a 1x1 downsample in the first block of stages 2-4), fc.
    """
    shapes = [(64, 3, 7, 7)]
    c_in = 64
    for c in (64, 128, 256, 512):
        for block in range(2):
            shapes.append((c, c_in if block == 0 else c, 3, 3))
            shapes.append((c, c, 3, 3))
            if block == 0 and c != c_in:
                shapes.append((c, c_in, 1, 1))
        c_in = c
    shapes.append((1000, 512))
    return shapes


def resnet18_weights(seed: int = 0) -> list[np.ndarray]:
    """Seeded float32 tensors of :func:`resnet18_weight_shapes`, kaiming-normal scale."""
    rng = np.random.default_rng(_seed("resnet18", seed))
    out = []
    for shape in resnet18_weight_shapes():
        fan_in = int(np.prod(shape[1:]))
        out.append((rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32))
    return out


class ActivationCase(NamedTuple):
    """Activation samples (a few batches) plus per-element HMSE weights."""

    name: str
    kind: str
    batches: tuple[np.ndarray, ...]  # float64
    weights: tuple[np.ndarray, ...]  # positive, same shapes (Hessian-weighted histogram)


def activation_case(
    kind: str, seed: int = 0, *, n_batches: int = 3, batch_shape=(4, 16, 8, 8)
) -> ActivationCase:
    """Seeded activation batches of ``kind``; the scale drifts a little between batches so the
    collector's merge re-bins (MCT's ``HistogramCollector``)."""
    rng = np.random.default_rng(_seed("a", kind, seed, n_batches, batch_shape))
    scale = float(rng.uniform(0.5, 3.0))
    batches, weights = [], []
    for _ in range(n_batches):
        drift = 1.0 if kind in ("constant", "near_zero") else float(rng.uniform(0.9, 1.1))
        batches.append(sample(kind, batch_shape, rng) * scale * drift)
        weights.append(np.exp(rng.normal(0.0, 1.0, batch_shape)))
    return ActivationCase(f"{kind}-s{seed}", kind, tuple(batches), tuple(weights))


def histogram(batches, *, n_bins: int = 2048, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """NumPy re-statement of MCT's (weighted) histogram collector (``HistogramCollector`` /
    ``WeightedHistogramCollector``, ``core/common/collectors/``).

    Per batch ``np.histogram`` over its own range; merged by interpolating cumulative counts at
    ``linspace(min edge, max edge, n_bins + 1)``. The parity suite checks it equals MCT's
    collector exactly; the benchmark uses it so its inputs do not need MCT.

    Returns:
      ``(bins[n_bins + 1], counts[n_bins])`` float64.
    """
    hists = []
    ws = [None] * len(batches) if weights is None else list(weights)
    for b, w in zip(batches, ws, strict=True):
        b = np.asarray(b, dtype=np.float64)
        if w is not None:
            w = np.asarray(w, dtype=np.float64)
            if np.all(w == 0):
                w = np.ones_like(b)
        c, e = np.histogram(b, bins=n_bins, weights=w)
        hists.append((c, e))
    edges = np.vstack([e for _, e in hists])
    new = np.linspace(np.min(edges), np.max(edges), n_bins + 1)
    counts = None
    for c, e in hists:
        cum = np.hstack([0, np.cumsum(c)])
        part = np.diff(np.interp(new, e, cum))
        counts = part if counts is None else counts + part
    return new, counts


def mct_auto_signed(bins: np.ndarray, counts: np.ndarray) -> bool:
    """MCT's pipeline signedness for a histogram node (MCT's ``determine_signedness``): any
    non-empty bin with a negative left edge."""
    return bool(np.any(np.asarray(bins)[:-1][np.asarray(counts) > 0] < 0))


def realistic_activation_histograms(
    n: int = 50, *, n_bins: int = 2048, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` histograms of varied, realistic activations for the benchmark.

    Cycles through the activation-like kinds (relu, gelu, silu, tanh, sigmoid, gaussian,
    laplace, student_t, outliers, all_positive) with varied scales, 3 batches each.

    Returns:
      ``bins[n, n_bins + 1]``, ``counts[n, n_bins]`` float64.
    """
    kinds = (
        "relu",
        "gelu",
        "silu",
        "tanh",
        "sigmoid",
        "gaussian",
        "laplace",
        "student_t",
        "outliers",
        "all_positive",
    )
    bins, counts = [], []
    for i in range(n):
        case = activation_case(kinds[i % len(kinds)], seed * 1000 + i, batch_shape=(8, 16, 8, 8))
        b, c = histogram(case.batches, n_bins=n_bins)
        bins.append(b)
        counts.append(c)
    return np.stack(bins), np.stack(counts)
