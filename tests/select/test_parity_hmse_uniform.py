"""Per-tensor HMSE searches at low bits against MCT 2.6.1: uniform (the issue's case, a
depthwise 256x1x3x3 gaussian kernel with log-normal scores at 4 bits), and symmetric /
power-of-two.

Every case is searched by MCT's own selection function (``tests/select/mct_ref.py``) and by jq in
both modes. Rules:

* ``mct_compat=True`` equals MCT's range / threshold with
  ``tests/select/test_parity_mct.py``'s weight tolerance (``rtol=1e-6``, ``atol=1e-12``;
  power-of-two exactly);
* default mode: its answer's HMSE, evaluated by MCT's own error function in float64 (MCT 2.6.1's
  ``_hmse_error_function_wrapper``: ``mean((sqrt(h) (x - q))^2)`` over the flattened tensor), is at
  most MCT's answer's HMSE times ``1 + DEFAULT_RTOL``. The default search runs in float32, and a
  symmetric candidate range ``[-t, t]`` sits exactly on a rounding tie of its zero alignment
  (``a / s = -(2^n-1)/2`` in MCT's ``fix_range_to_include_zero``): float32 and MCT's float64
  resolve some of those ties differently, the two searches then walk different paths and end in
  different (equally local) optima. Over ~1,300 random cases of this kind the default answer was
  never worse than MCT's by more than 2.4e-4 (relative); DEFAULT_RTOL = 1e-3 keeps that margin and
  still fails an answer 3 % worse, the size of the reported defect.

* the exact (compat) quantizer reproduces MCT's float32 quantization of the search's start
  bit for bit (``test_exact_quantizer_bits_at_the_float32_start``; fails before the fix of
  the division in ``jq._src.select.quantizers.uniform_quantize``).

Inputs are drawn here (``default_rng`` seeded by a CRC of the case), not from
``tests/select/cases.py``, whose ``_seed`` keeps only the first 8 bytes of its text (every shape and
seed of a kind gets the same stream). All cases of one (method, n_bits, mode) go through one
``weights_qparams_batch`` call (one compilation); the issue's case also through
``weights_qparams``. About 35 s of CPU time, imports included.
"""

from __future__ import annotations

import functools
import itertools
import zlib
from typing import NamedTuple

import jax
import numpy as np
import pytest

pytest.importorskip("model_compression_toolkit")

try:  # works whether or not tests/ is a package
    from tests import mct_ref
except ImportError:  # pragma: no cover - depends on how pytest/sys.path are set up
    import mct_ref

import jq  # noqa: E402
from jq._src.select.quantizers import uniform_quantize  # noqa: E402

pytestmark = pytest.mark.mct

RTOL, ATOL = 1e-6, 1e-12  # tests/select/test_parity_mct.py's weight tolerance
DEFAULT_RTOL = 1e-3  # default mode's HMSE may exceed MCT's by this much (module docstring)

SHAPES = {
    "dw256": (256, 1, 3, 3),  # the issue's depthwise kernel
    "dw64": (64, 1, 3, 3),
    "conv": (16, 8, 3, 3),
}
# (weights, scores) kinds
KINDS = (
    ("gaussian", "lognormal"),  # the issue's kind
    ("gaussian", "lognormal2"),  # scores spread over ~4 decades
    ("chscale", "chlognormal"),  # per-channel weight scales and per-channel scores (depthwise)
    ("student_t", "cauchy"),  # heavy-tailed weights, heavy-tailed scores
    ("laplace", "lognormal"),
)
SEEDS = (0, 1)
UNIFORM_BITS = (2, 3, 4)
THRESHOLD_BITS = {"symmetric": (3,), "power_of_two": (2,)}


class Case(NamedTuple):
    shape: str
    wkind: str
    hkind: str
    seed: int


CASES = tuple(
    Case(shape, wk, hk, seed)
    for shape, (wk, hk), seed in itertools.product(SHAPES, KINDS, SEEDS)
    # keep the file fast: every kind and seed on the issue's shape, two kinds on the others
    if shape == "dw256" or ((wk, hk) in KINDS[:1] + KINDS[2:3] and seed == SEEDS[0])
)
ISSUE = Case("dw256", "gaussian", "lognormal", 0)


@functools.cache
def tensors(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """``(float32 weights, float32 positive scores)`` of one case."""
    shape = SHAPES[case.shape]
    rng = np.random.default_rng(zlib.crc32("/".join(map(str, case)).encode()))
    ch = (shape[0],) + (1,) * (len(shape) - 1)
    if case.wkind == "gaussian":
        w = rng.standard_normal(shape)
    elif case.wkind == "chscale":
        w = rng.standard_normal(shape) * rng.lognormal(0.0, 0.7, ch)
    elif case.wkind == "student_t":
        w = rng.standard_t(3.0, shape) * 0.3
    elif case.wkind == "laplace":
        w = rng.laplace(0.0, 0.5, shape)
    else:  # pragma: no cover
        raise ValueError(case.wkind)
    if case.hkind == "lognormal":
        h = rng.lognormal(0.0, 1.0, shape)
    elif case.hkind == "lognormal2":
        h = rng.lognormal(0.0, 2.0, shape)
    elif case.hkind == "chlognormal":
        h = rng.lognormal(0.0, 1.5, ch) * rng.lognormal(0.0, 0.5, shape)
    elif case.hkind == "cauchy":
        h = np.abs(rng.standard_cauchy(shape)) + 1e-6
    else:  # pragma: no cover
        raise ValueError(case.hkind)
    return w.astype(np.float32), h.astype(np.float32)


def _keys(method: str) -> tuple[str, ...]:
    return ("range_min", "range_max") if method == "uniform" else ("threshold",)


def _as_dict(qp, method: str) -> dict:
    return {k: np.asarray(getattr(qp, k), dtype=np.float64).reshape(-1) for k in _keys(method)}


@functools.cache
def mct_answer(case: Case, method: str, n_bits: int) -> dict:
    w, h = tensors(case)
    out = mct_ref.weights(
        w, method=method, error_method="hmse", n_bits=n_bits, per_channel=False, hessian=h
    )
    return {k: np.asarray(out[k], dtype=np.float64).reshape(-1) for k in _keys(method)}


@functools.cache
def jq_answers(method: str, n_bits: int, compat: bool) -> dict[Case, dict]:
    """jq's answers for every case, one batch call (one compilation)."""
    pairs = [tensors(c) for c in CASES]
    out = jq.weights_qparams_batch(
        [w for w, _ in pairs],
        n_bits=n_bits,
        method=method,
        error_method="hmse",
        per_channel=False,
        hessians=[h for _, h in pairs],
        mct_compat=compat,
    )
    for qp in out:
        for k in _keys(method):
            assert np.asarray(getattr(qp, k)).shape == (), "per-tensor results are scalars"
    return {c: _as_dict(qp, method) for c, qp in zip(CASES, out, strict=True)}


def hmse(case: Case, params: dict, method: str, n_bits: int) -> float:
    """HMSE of an answer by MCT's own error function (``_hmse_error_function_wrapper``),
    float64."""
    w, h = tensors(case)
    loss = mct_ref.weights_loss(
        w, params, method=method, error_method="hmse", n_bits=n_bits, per_channel=False, hessian=h
    )
    return float(loss[0])


def _equal(method: str, ref: dict, got: dict) -> bool:
    if method == "power_of_two":
        return all(np.array_equal(ref[k], got[k]) for k in ref)
    return all(np.allclose(got[k], ref[k], rtol=RTOL, atol=ATOL) for k in ref)


def _fmt(d: dict) -> str:
    return ", ".join(f"{k}={float(v[0]):.7g}" for k, v in d.items())


COMBOS = [("uniform", b) for b in UNIFORM_BITS] + [
    (m, b) for m, bits in THRESHOLD_BITS.items() for b in bits
]
IDS = [f"{m}-{b}bit" for m, b in COMBOS]


# Each compat cell compiles its own search (40-50 s on 2 cores): `make test` keeps uniform at
# 2 bits and symmetric; `make test-all` runs the rest.
_FAST = {("uniform", 2), ("symmetric", 3)}
COMPAT_CELLS = [
    pytest.param(*c, id=i, marks=[] if c in _FAST else [pytest.mark.slow])
    for c, i in zip(COMBOS, IDS, strict=True)
]


@pytest.mark.parametrize(("method", "n_bits"), COMPAT_CELLS)
def test_compat_equals_mct(method, n_bits):
    got = jq_answers(method, n_bits, True)
    bad = []
    for case in CASES:
        ref = mct_answer(case, method, n_bits)
        if not _equal(method, ref, got[case]):
            l_ref = hmse(case, ref, method, n_bits)
            l_got = hmse(case, got[case], method, n_bits)
            bad.append(
                f"{case}: MCT {_fmt(ref)} (HMSE {l_ref:.7g}), "
                f"jq {_fmt(got[case])} (HMSE {l_got:.7g})"
            )
    assert not bad, f"{len(bad)}/{len(CASES)} cases differ from MCT 2.6.1:\n" + "\n".join(bad)


@pytest.mark.parametrize(("method", "n_bits"), COMBOS, ids=IDS)
def test_default_hmse_not_worse_than_mct(method, n_bits):
    got = jq_answers(method, n_bits, False)
    bad = []
    for case in CASES:
        ref = mct_answer(case, method, n_bits)
        l_ref = hmse(case, ref, method, n_bits)
        l_got = hmse(case, got[case], method, n_bits)
        if not l_got <= l_ref * (1 + DEFAULT_RTOL):
            bad.append(
                f"{case}: HMSE {l_got:.7g} at jq's {_fmt(got[case])} > {l_ref:.7g} at MCT's "
                f"{_fmt(ref)} ({l_got / l_ref - 1:+.2e})"
            )
    assert not bad, f"{len(bad)}/{len(CASES)} default answers worse than MCT's:\n" + "\n".join(bad)


@pytest.mark.parametrize("compat", [True, False], ids=["compat", "default"])
def test_issue_case_single_call(compat):
    """The reported call, ``weights_qparams`` on one depthwise kernel, 4-bit uniform HMSE."""
    w, h = tensors(ISSUE)
    qp = jq.weights_qparams(
        w,
        method="uniform",
        error_method="hmse",
        n_bits=4,
        per_channel=False,
        hessian=h,
        mct_compat=compat,
    )
    got = _as_dict(qp, "uniform")
    ref = mct_answer(ISSUE, "uniform", 4)
    if compat:
        assert _equal("uniform", ref, got), f"MCT {_fmt(ref)}, jq {_fmt(got)}"
    l_ref, l_got = hmse(ISSUE, ref, "uniform", 4), hmse(ISSUE, got, "uniform", 4)
    assert l_got <= l_ref * (1 + DEFAULT_RTOL), (l_got, l_ref, _fmt(got), _fmt(ref))


@pytest.mark.parametrize("n_bits", [2, 3, 4])
def test_exact_quantizer_bits_at_the_float32_start(n_bits):
    """compat's float32 start quantizes like NumPy, to the bit.

    The uniform search starts at ``[min, max(-min, max)]`` (MCT's ``uniform_selection_tensor``),
    quantized in float32 for float32 weights (the ``f32_start`` quirk). Where ``-min >= max`` the
    start is symmetric, its zero alignment is a tie (``a / s = -(2^n-1)/2`` in MCT's
    ``fix_range_to_include_zero``) and moves the grid half a step, so the minimum lies exactly on a
    midpoint between two levels. Only a true division resolves such a tie as NumPy does; XLA
    rewrites ``x / broadcast(d)`` as ``x * (1 / d)``, which is one ulp off for ~25 % of elements.
    The rows of the issue's kernel (per-channel starts) hold ~120 such ties.
    """
    w, _ = tensors(ISSUE)
    x = w.reshape(w.shape[0], -1)
    a = x.min(axis=1, keepdims=True)
    b = np.maximum(-a, x.max(axis=1, keepdims=True))
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(uniform_quantize, static_argnums=3)(x, a, b, n_bits)[0])
    ref = mct_ref._qh.uniform_quantize_tensor(x, a, b, n_bits)
    assert got.dtype == ref.dtype == np.float32
    bad = np.argwhere(got != ref)
    assert bad.size == 0, f"{len(bad)} elements differ from MCT's float32 quantizer, e.g. {bad[:3]}"
