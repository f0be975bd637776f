"""Parity of jq (``mct_compat=True``) with MCT 2.6.1's threshold selection (issue 2, item 4).

MCT's own selection functions (``tests/select/mct_ref.py``) and jq receive the same tensors and
histograms (``tests/select/cases.py``). Agreement rules:

* power-of-two thresholds: exactly equal;
* symmetric thresholds and uniform ranges: ``rtol=1e-6`` (``atol=1e-12`` for exact zeros);
* signedness (activations): equal; per-channel shapes equal MCT's; per-tensor results are
  single values broadcastable against the tensor;
* KL: MCT evaluates the divergence in float32 (``_kl_error_histogram``), so near-tied candidates are
  ordered by rounding noise. Where jq's answer differs, MCT's own loss function is evaluated at
  both answers and they must agree within ``KL_ATOL + KL_RTOL * |loss|`` (status ``kl_tol``,
  counted and reported separately);
* where MCT raises (e.g. uniform + KL on one-signed narrow activations, whose candidate ranges
  trip an ``assert`` in MCT's ``_get_bins_indices_from_range``), jq must
  raise ``ValueError``.

Default mode covers every method x error method x per-channel combination, each over all case
kinds with shapes and bit widths rotated, plus a few small KL cases (MCT's KL takes seconds per
case); it runs in about 2-3 minutes on 2 cores. ``JQ_PARITY_FULL=1`` runs the full product
(kinds x shapes x n_bits, and more KL), which takes well over an hour.

Run as a script to get the agreement table by method x error method::

    .venv/bin/python tests/select/test_parity_mct.py [--full] [--mct-cache /tmp/mct.pkl]

(``--mct-cache`` stores MCT's answers outside the repository so a re-run skips MCT.)
"""

from __future__ import annotations

import functools
import itertools
import os
import pickle
import sys
import time
from typing import NamedTuple

import numpy as np
import pytest

pytest.importorskip("model_compression_toolkit")

try:  # works whether or not tests/ is a package
    from tests import cases, mct_ref
except ImportError:  # pragma: no cover - depends on how pytest/sys.path are set up
    import cases
    import mct_ref

import jq  # noqa: E402

pytestmark = pytest.mark.mct

FULL = os.environ.get("JQ_PARITY_FULL", "") not in ("", "0")

RTOL, ATOL = 1e-6, 1e-12
KL_ATOL, KL_RTOL = 1e-6, 1e-4  # on MCT's own KL loss value (float32 noise is ~1e-8)

METHODS = ("power_of_two", "symmetric", "uniform")
# (label, error method, p)
ERRORS = (
    ("noclipping", "noclipping", 2.0),
    ("mse", "mse", 2.0),
    ("mae", "mae", 2.0),
    ("lp2", "lp", 2.0),
    ("lp3", "lp", 3.0),
    ("kl", "kl", 2.0),
    ("hmse", "hmse", 2.0),
)
SHAPES = dict(cases.SHAPES, tiny=(4, 18))  # tiny: default-mode KL weight cases
KL_WEIGHT_KINDS = ("gaussian", "outliers", "relu", "near_zero")
KL_ACT_KINDS = ("gaussian", "relu", "tanh")


class WSpec(NamedTuple):
    """One weight parity case."""

    method: str
    label: str
    error_method: str
    p: float
    per_channel: bool
    kind: str
    shape: str
    n_bits: int
    channel_axis: int = 0


class ASpec(NamedTuple):
    """One activation parity case. ``signed``: "pipeline" passes MCT's pipeline rule
    (``determine_signedness``) as ``is_signed``; "auto" passes ``None`` so each MCT function
    applies its own rule."""

    method: str
    label: str
    error_method: str
    p: float
    kind: str
    n_bins: int
    n_bits: int
    signed: str


class Outcome(NamedTuple):
    status: str  # "equal" | "kl_tol" | "raise_ok" | "mismatch"
    detail: str = ""


# ----------------------------------------------------------------------------- case lists


def weight_specs(full: bool = FULL) -> list[WSpec]:
    """Weight cases: every method x error x per-channel; kinds/shapes/n_bits rotated by default."""
    out = []
    names = tuple(cases.SHAPES)
    for (mi, method), (ei, (label, err, p)), pc in itertools.product(
        enumerate(METHODS), enumerate(ERRORS), (False, True)
    ):
        base = (method, label, err, p, pc)
        if full and err == "kl" and method != "power_of_two":
            # MCT's symmetric/uniform weight KL takes seconds to minutes per case: small shapes.
            # Uniform weight KL ignores n_bits (always 8: MCT's
            # get_threshold_selection_tensor_error_function does not pass it on): one suffices.
            bits = (8,) if method == "uniform" else cases.N_BITS
            for kind, nb in itertools.product(cases.KINDS, bits):
                out.append(WSpec(*base, kind, "tiny", nb))
            if method == "symmetric":
                out.extend(WSpec(*base, kind, "linear", 4) for kind in cases.KINDS)
        elif full:
            for kind, shape, nb in itertools.product(cases.KINDS, names, cases.N_BITS):
                out.append(WSpec(*base, kind, shape, nb))
        elif err == "kl" and method != "power_of_two":
            kinds = KL_WEIGHT_KINDS[:2] if method == "symmetric" else KL_WEIGHT_KINDS[pc : pc + 1]
            for i, kind in enumerate(kinds):
                out.append(WSpec(*base, kind, "tiny", cases.N_BITS[(i + mi + pc) % 3]))
        else:
            # One (shape, n_bits) pair per combination (one jq compilation), rotated over the
            # combinations so that all 9 pairs occur; all kinds for each.
            j = (mi * len(ERRORS) + ei) * 2 + pc
            shape, nb = names[j % 3], cases.N_BITS[(j // 3) % 3]
            for kind in cases.KINDS:
                out.append(WSpec(*base, kind, shape, nb))
        if pc and err in ("mse", "hmse") and not full:
            # channel_axis 1 (HMSE reshapes its scores along axis 0 regardless, an MCT quirk).
            out.append(WSpec(*base, "laplace", "linear", 4, channel_axis=1))
    return out


def activation_specs(full: bool = FULL) -> list[ASpec]:
    """Activation cases: every method x error; kinds/n_bits/signedness rotated by default."""
    out = []
    for (mi, method), (ei, (label, err, p)) in itertools.product(
        enumerate(METHODS), enumerate(ERRORS)
    ):
        base = (method, label, err, p)
        if full and err == "kl" and method != "power_of_two":
            n_bins = 2048 if method == "symmetric" else 512  # uniform KL: ~10 s per case
            for kind, nb in itertools.product(cases.KINDS, cases.N_BITS):
                out.append(ASpec(*base, kind, n_bins, nb, "pipeline"))
        elif full:
            for kind, nb, mode in itertools.product(
                cases.KINDS, cases.N_BITS, ("pipeline", "auto")
            ):
                out.append(ASpec(*base, kind, 2048, nb, mode))
        elif err == "kl" and method != "power_of_two":
            kinds = KL_ACT_KINDS if method == "symmetric" else KL_ACT_KINDS[:1]
            for i, kind in enumerate(kinds):
                nb = cases.N_BITS[(i + 1) % 3]
                out.append(ASpec(*base, kind, 256, nb, ("pipeline", "auto")[i % 2]))
            if method == "uniform":  # one-signed narrow data: MCT raises AssertionError
                out.append(ASpec(*base, "constant", 256, 8, "pipeline"))
        else:
            nb = cases.N_BITS[(mi + ei) % 3]  # one n_bits per combination: one compilation
            for i, kind in enumerate(cases.KINDS):
                out.append(ASpec(*base, kind, 2048, nb, ("pipeline", "auto")[(i + ei) % 2]))
    return out


# ----------------------------------------------------------------------------- inputs


@functools.cache
def _weight_input(kind: str, shape: str) -> cases.WeightCase:
    return cases.weight_case(kind, SHAPES[shape])


@functools.cache
def _act_input(kind: str, n_bins: int, weighted: bool) -> tuple[np.ndarray, np.ndarray]:
    case = cases.activation_case(kind)
    return mct_ref.histogram(
        case.batches, n_bins=n_bins, weights=case.weights if weighted else None
    )


def _act_hist(spec: ASpec):
    bins, counts = _act_input(spec.kind, spec.n_bins, spec.error_method == "hmse")
    is_signed = cases.mct_auto_signed(bins, counts) if spec.signed == "pipeline" else None
    return bins, counts, is_signed


# ----------------------------------------------------------------------------- MCT side

_MCT_DISK: dict = {}


def _mct_or_exc(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # MCT's AssertionError / ValueError are part of its behaviour
        return e


@functools.cache
def mct_weights(spec: WSpec):
    """MCT's answer (dict) or the exception it raised; cached for the session."""
    if spec in _MCT_DISK:
        return _MCT_DISK[spec]
    case = _weight_input(spec.kind, spec.shape)
    return _mct_or_exc(
        mct_ref.weights,
        case.tensor,
        method=spec.method,
        error_method=spec.error_method,
        n_bits=spec.n_bits,
        per_channel=spec.per_channel,
        channel_axis=spec.channel_axis,
        p=spec.p,
        hessian=case.hessian,
    )


@functools.cache
def mct_activations(spec: ASpec):
    if spec in _MCT_DISK:
        return _MCT_DISK[spec]
    bins, counts, is_signed = _act_hist(spec)
    return _mct_or_exc(
        mct_ref.activations,
        bins,
        counts,
        method=spec.method,
        error_method=spec.error_method,
        n_bits=spec.n_bits,
        p=spec.p,
        is_signed=is_signed,
    )


# ----------------------------------------------------------------------------- jq side


def jq_weights(spec: WSpec, *, mct_compat: bool = True):
    case = _weight_input(spec.kind, spec.shape)
    return jq.weights_qparams(
        case.tensor,
        n_bits=spec.n_bits,
        method=spec.method,
        error_method=spec.error_method,
        per_channel=spec.per_channel,
        channel_axis=spec.channel_axis,
        p=spec.p,
        hessian=case.hessian if spec.error_method == "hmse" else None,
        mct_compat=mct_compat,
    )


def jq_activations(spec: ASpec, *, mct_compat: bool = True):
    bins, counts, is_signed = _act_hist(spec)
    return jq.activation_qparams(
        bins,
        counts,
        n_bits=spec.n_bits,
        method=spec.method,
        error_method=spec.error_method,
        p=spec.p,
        is_signed=is_signed,
        mct_compat=mct_compat,
    )


# ----------------------------------------------------------------------------- comparison


def _keys(method: str) -> tuple[str, ...]:
    return ("range_min", "range_max") if method == "uniform" else ("threshold",)


def _close(method: str, ref: np.ndarray, got: np.ndarray) -> bool:
    if method == "power_of_two":
        return bool(np.array_equal(ref, got, equal_nan=True))
    return bool(np.allclose(got, ref, rtol=RTOL, atol=ATOL, equal_nan=True))


def _fmt(a) -> str:
    a = np.ravel(a)
    s = np.array2string(a[:6], precision=10, separator=", ")
    return s if a.size <= 6 else s[:-1] + ", ...]"


def _exc_outcome(ref, got_exc) -> Outcome | None:
    """Outcome when either side raised; None when neither did."""
    if isinstance(ref, BaseException):
        if isinstance(got_exc, ValueError):
            return Outcome("raise_ok", f"MCT {type(ref).__name__}; jq ValueError")
        if got_exc is None:
            return Outcome("mismatch", f"MCT raised {type(ref).__name__}{ref!r}; jq returned")
        return Outcome("mismatch", f"MCT {type(ref).__name__}; jq {type(got_exc).__name__}")
    if got_exc is not None:
        return Outcome("mismatch", f"jq raised {type(got_exc).__name__}: {got_exc}")
    return None


def check_weight(spec: WSpec, *, mct_compat: bool = True) -> Outcome:
    """Compare jq with MCT on one weight case."""
    ref = mct_weights(spec)
    got, got_exc = None, None
    try:
        got = jq_weights(spec, mct_compat=mct_compat)
    except Exception as e:
        got_exc = e
    exc = _exc_outcome(ref, got_exc)
    if exc is not None:
        return exc
    tensor = _weight_input(spec.kind, spec.shape).tensor
    c = tensor.shape[spec.channel_axis]
    problems = []
    equal = True
    for key in _keys(spec.method):
        r = np.asarray(ref[key], dtype=np.float64)
        g = np.asarray(getattr(got, key), dtype=np.float64)
        if spec.per_channel:
            want = [1] * tensor.ndim
            want[spec.channel_axis] = c
            if g.shape != tuple(want):
                problems.append(f"{key} shape {g.shape}, expected {tuple(want)}")
        elif g.size != 1 or np.broadcast_shapes(g.shape, tensor.shape) != tensor.shape:
            problems.append(f"per-tensor {key} shape {g.shape} not one broadcastable value")
        if r.size != g.size:
            problems.append(f"{key} size {g.size} vs MCT {r.size}")
            continue
        if not _close(spec.method, r.ravel(), g.ravel()):
            equal = False
    if problems:
        return Outcome("mismatch", "; ".join(problems))
    if equal:
        return Outcome("equal")
    detail = "; ".join(
        f"{k}: MCT {_fmt(ref[k])} jq {_fmt(getattr(got, k))}" for k in _keys(spec.method)
    )
    if spec.error_method == "kl":
        ok, why = _kl_weight_losses_agree(spec, ref, got)
        return Outcome("kl_tol" if ok else "mismatch", f"{detail}; {why}")
    return Outcome("mismatch", detail)


def _kl_weight_losses_agree(spec: WSpec, ref: dict, got) -> tuple[bool, str]:
    case = _weight_input(spec.kind, spec.shape)
    kw = dict(
        method=spec.method,
        error_method="kl",
        n_bits=spec.n_bits,
        per_channel=spec.per_channel,
        channel_axis=spec.channel_axis,
        p=spec.p,
    )
    mine = {k: np.asarray(getattr(got, k), dtype=np.float64) for k in _keys(spec.method)}
    l_ref = mct_ref.weights_loss(case.tensor, ref, **kw)
    l_got = mct_ref.weights_loss(case.tensor, mine, **kw)
    return _losses_agree(l_ref, l_got)


def _losses_agree(l_ref, l_got) -> tuple[bool, str]:
    l_ref, l_got = np.atleast_1d(l_ref), np.atleast_1d(l_got)
    same = (l_ref == l_got) | (np.abs(l_got - l_ref) <= KL_ATOL + KL_RTOL * np.abs(l_ref))
    same |= np.isnan(l_ref) & np.isnan(l_got)
    bad = np.flatnonzero(~same)
    if bad.size == 0:
        return True, f"MCT-evaluated KL equal within tolerance (max |d| {_maxdiff(l_ref, l_got)})"
    i = bad[0]
    return False, f"MCT KL loss at MCT's answer {l_ref[i]:.9g}, at jq's {l_got[i]:.9g} (ch {i})"


def _maxdiff(a, b) -> str:
    d = np.abs(np.asarray(a) - np.asarray(b))
    d = d[np.isfinite(d)]
    return f"{d.max():.2g}" if d.size else "n/a"


def check_activation(spec: ASpec, *, mct_compat: bool = True) -> Outcome:
    """Compare jq with MCT on one activation case."""
    ref = mct_activations(spec)
    got, got_exc = None, None
    try:
        got = jq_activations(spec, mct_compat=mct_compat)
    except Exception as e:
        got_exc = e
    exc = _exc_outcome(ref, got_exc)
    if exc is not None:
        return exc
    problems = []
    equal = True
    for key in _keys(spec.method):
        r = np.asarray(ref[key], dtype=np.float64)
        g = np.asarray(getattr(got, key), dtype=np.float64)
        if g.size != 1:
            problems.append(f"{key} shape {g.shape}, expected one value")
            continue
        if not _close(spec.method, r.ravel(), g.ravel()):
            equal = False
    if bool(np.asarray(got.signed)) != ref["signed"]:
        problems.append(f"signed: MCT {ref['signed']} jq {bool(np.asarray(got.signed))}")
    detail = "; ".join(
        f"{k}: MCT {_fmt(ref[k])} jq {_fmt(getattr(got, k))}" for k in _keys(spec.method)
    )
    if problems:
        return Outcome("mismatch", "; ".join(problems) + "; " + detail)
    if equal:
        return Outcome("equal")
    if spec.error_method == "kl":
        bins, counts, _ = _act_hist(spec)
        kw = dict(method=spec.method, error_method="kl", n_bits=spec.n_bits, signed=ref["signed"])
        mine = {k: np.asarray(getattr(got, k)) for k in _keys(spec.method)}
        l_ref = mct_ref.activation_loss(bins, counts, ref, **kw)
        l_got = mct_ref.activation_loss(bins, counts, mine, **kw)
        ok, why = _losses_agree(l_ref, l_got)
        return Outcome("kl_tol" if ok else "mismatch", f"{detail}; {why}")
    return Outcome("mismatch", detail)


# ----------------------------------------------------------------------------- tests


def _ids(combo) -> str:
    return "-".join(str(c) for c in combo)


_W_COMBOS = list(itertools.product(METHODS, [e[0] for e in ERRORS], (True, False)))
_A_COMBOS = list(itertools.product(METHODS, [e[0] for e in ERRORS]))
# The symmetric and uniform KL cells take 18-54 s each on 2 cores (MCT's NumPy KL is the slow
# side): `make test-all` runs them; `make test` keeps power-of-two KL and every other cell.
_HEAVY = {("symmetric", "kl"), ("uniform", "kl")}


# The symmetric and uniform per-tensor weight cells (every error method but NOCLIPPING) compile
# one compat program each (10-25 s per cell on 2 cores): `make test-all` runs them; their
# per-channel twins (MCT's default for kernels) and every power-of-two cell stay in `make test`.
# Likewise the uniform activation cells but MSE (40-60 s each: MCT's uniform range search).
def _is_heavy(c: tuple) -> bool:
    per_tensor_search = len(c) == 3 and c[2] is False and c[0] != "power_of_two"
    uniform_activation = len(c) == 2 and c[0] == "uniform" and c[1] not in ("noclipping", "mse")
    # Per channel, LP at p=3 repeats p=2's program with another p, and symmetric HMSE is also
    # in test_parity_hmse_uniform.py: `make test-all` runs them.
    heavy_channel = (
        len(c) == 3
        and c[2] is True
        and c[:2]
        in {
            ("symmetric", "lp3"),
            ("uniform", "lp3"),
            ("symmetric", "hmse"),
        }
    )
    return (
        c[:2] in _HEAVY
        or uniform_activation
        or heavy_channel
        or (per_tensor_search and c[1] != "noclipping")
    )


def _cells(combos: list) -> list:
    return [
        pytest.param(*[c], id=_ids(c), marks=[pytest.mark.slow] if _is_heavy(c) else [])
        for c in combos
    ]


def _report(outcomes: list[tuple[object, Outcome]]) -> None:
    bad = [(s, o) for s, o in outcomes if o.status == "mismatch"]
    n_tol = sum(o.status == "kl_tol" for _, o in outcomes)
    msg = "\n".join(f"{s}: {o.detail}" for s, o in bad)
    assert not bad, f"{len(bad)}/{len(outcomes)} cases disagree with MCT 2.6.1:\n{msg}"
    if n_tol:
        print(f"{n_tol}/{len(outcomes)} KL cases agree only within the KL loss tolerance")


@pytest.mark.parametrize("combo", _cells(_W_COMBOS))
def test_weights_parity(combo):
    method, label, per_channel = combo
    specs = [
        s
        for s in weight_specs()
        if (s.method, s.label, s.per_channel) == (method, label, per_channel)
    ]
    assert specs
    _report([(s, check_weight(s)) for s in specs])


@pytest.mark.parametrize("combo", _cells(_A_COMBOS))
def test_activations_parity(combo):
    method, label = combo
    specs = [s for s in activation_specs() if (s.method, s.label) == (method, label)]
    assert specs
    _report([(s, check_activation(s)) for s in specs])


def test_histogram_collector_restatement_matches_mct():
    """``cases.histogram`` (used by the benchmark) is MCT's collector, bit for bit."""
    for kind in ("gaussian", "relu", "constant", "near_zero"):
        case = cases.activation_case(kind)
        for w in (None, case.weights):
            ref = mct_ref.histogram(case.batches, n_bins=512, weights=w)
            got = cases.histogram(case.batches, n_bins=512, weights=w)
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("data", ["constant", "narrow_positive", "narrow_negative"])
def test_uniform_kl_activation_raises_where_mct_raises(data):
    """Uniform + KL on one-signed narrow data: MCT asserts, jq raises a clear ValueError."""
    rng = np.random.default_rng(7)
    x = {
        "constant": np.full(1000, 0.37),
        "narrow_positive": rng.uniform(5.0, 7.0, 1000),
        "narrow_negative": -rng.uniform(5.0, 7.0, 1000),
    }[data]
    bins, counts = mct_ref.histogram([x], n_bins=256)
    with pytest.raises(AssertionError):
        mct_ref.activations(bins, counts, method="uniform", error_method="kl", n_bits=8)
    with pytest.raises(ValueError, match="(?i)kl"):
        jq.activation_qparams(
            bins, counts, n_bits=8, method="uniform", error_method="kl", mct_compat=True
        )


@pytest.mark.parametrize(
    # 30-40 s per method on 2 cores: power-of-two in `make test`, the others in `make test-all`.
    "method",
    [m if m == "power_of_two" else pytest.param(m, marks=pytest.mark.slow) for m in METHODS],
)
def test_per_tensor_results_broadcast(method):
    """Per-tensor results are one value that broadcasts against the tensor, for every shape."""
    for shape in cases.SHAPES.values():
        x = cases.weight_case("gaussian", shape).tensor
        for err in ("noclipping", "mse"):
            qp = jq.weights_qparams(
                x, n_bits=8, method=method, error_method=err, per_channel=False, mct_compat=True
            )
            for key in _keys(method):
                v = np.asarray(getattr(qp, key))
                assert v.size == 1, (method, err, shape, v.shape)
                assert np.broadcast_shapes(v.shape, x.shape) == x.shape
                assert np.broadcast_to(v, x.shape).shape == x.shape


# ----------------------------------------------------------------------------- script mode


def _table(rows: dict[tuple[str, str], list[Outcome]], title: str) -> str:
    lines = [
        f"### {title}",
        "",
        "| method | error | agree / total | exact | KL-tolerance | raise=raise |",
        "|---|---|---|---|---|---|",
    ]
    tot = np.zeros(4, int)
    for (method, label), outs in rows.items():
        n = len(outs)
        eq = sum(o.status == "equal" for o in outs)
        tol = sum(o.status == "kl_tol" for o in outs)
        rai = sum(o.status == "raise_ok" for o in outs)
        tot += (eq + tol + rai, n, tol, rai)
        lines.append(f"| {method} | {label} | {eq + tol + rai} / {n} | {eq} | {tol} | {rai} |")
    pct = 100.0 * tot[0] / max(tot[1], 1)
    lines.append(f"| **all** | | **{tot[0]} / {tot[1]}** ({pct:.2f} %) | | {tot[2]} | {tot[3]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="full sweep (JQ_PARITY_FULL)")
    ap.add_argument("--mct-cache", help="pickle file (outside the repo) for MCT's answers")
    ap.add_argument("--only", choices=("weights", "activations"))
    ap.add_argument("--errors", help="comma list of error labels, e.g. kl,mse")
    ap.add_argument("--mct-only", action="store_true", help="only compute/cache MCT answers")
    ap.add_argument("--default-mode", action="store_true", help="also count jq default mode")
    ap.add_argument("--verbose", action="store_true", help="print every case as it is checked")
    args = ap.parse_args(argv)
    full = args.full or FULL
    if args.mct_cache and os.path.exists(args.mct_cache):
        with open(args.mct_cache, "rb") as f:
            _MCT_DISK.update(pickle.load(f))

    def save():
        if args.mct_cache:
            data = dict(_MCT_DISK)
            with open(args.mct_cache + ".tmp", "wb") as f:
                pickle.dump(data, f)
            os.replace(args.mct_cache + ".tmp", args.mct_cache)

    labels = set(args.errors.split(",")) if args.errors else None
    groups = []
    if args.only in (None, "weights"):
        groups.append(("weights", weight_specs(full), mct_weights, check_weight))
    if args.only in (None, "activations"):
        groups.append(("activations", activation_specs(full), mct_activations, check_activation))
    t0 = time.perf_counter()
    for name, specs, mct_fn, check in groups:
        specs = [s for s in specs if labels is None or s.label in labels]
        rows: dict = {}
        rows_default: dict = {}
        mismatches = []
        for i, s in enumerate(specs):
            if s not in _MCT_DISK:
                _MCT_DISK[s] = mct_fn(s)
                if i % 20 == 0:
                    save()
            if args.mct_only:
                continue
            o = check(s)
            if args.verbose:
                print(f"  {i} {s} {o.status} {o.detail}", file=sys.stderr, flush=True)
            rows.setdefault((s.method, s.label), []).append(o)
            if o.status == "mismatch":
                mismatches.append((s, o))
            if args.default_mode:
                od = check(s, mct_compat=False)
                rows_default.setdefault((s.method, s.label), []).append(od)
        save()
        print(f"[{name}: {len(specs)} cases, {time.perf_counter() - t0:.0f} s]", flush=True)
        if args.mct_only:
            continue
        print(_table(rows, f"{name}, jq mct_compat=True vs MCT 2.6.1"))
        print()
        for s, o in mismatches:
            print(f"MISMATCH {s}: {o.detail}")
        kl_tol = [(s, o) for outs in rows.values() for o in outs if o.status == "kl_tol"]
        if kl_tol:
            print(f"({len(kl_tol)} KL cases agree within tolerance only)")
        if args.default_mode:
            print(_table(rows_default, f"{name}, jq default mode vs MCT 2.6.1 (informational)"))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
