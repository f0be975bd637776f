"""Per-group weight parameters (``group_size=``): a (channel, group) is a row of the search."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jq
from jq._src.select import tile_search as _ts
from jq._src.select import tiles as _tiles

METHODS = ["power_of_two", "symmetric", "uniform"]
ERRORS = ["noclipping", "mse", "mae", "lp", "hmse"]
FIELDS = ("threshold", "range_min", "range_max")


def _params(qp):
    return {f: np.asarray(getattr(qp, f)) for f in FIELDS if getattr(qp, f) is not None}


def _rows(w, axis, g):
    """The (channel, group) rows of ``w``: channel axis first, the rest flattened, cut in g."""
    return np.moveaxis(w, axis, 0).reshape(-1, g)


@pytest.mark.parametrize("method", METHODS)
def test_per_group_equals_per_channel_on_the_group_rows(rng, method):
    """Golden property: grouping ``w`` is the per-channel search of its ``(C * G, g)`` rows,
    bit for bit (the same tile rows), for every error method; conv kernels group over their
    flattened ``in x kh x kw``, a JAX-layout ``(in, out)`` kernel along ``in``."""
    cases = [((8, 64), 0, 32), ((6, 4, 3, 3), 0, 12), ((48, 5), 1, 16)]
    for (shape, axis, g), err in itertools.product(cases, ERRORS):
        w = rng.standard_normal(shape).astype(np.float32)
        h = np.abs(rng.standard_normal(shape)).astype(np.float32) if err == "hmse" else None
        kw = dict(method=method, error_method=err, n_bits=4, p=3.0)
        grouped = jq.weights_qparams(w, channel_axis=axis, group_size=g, hessian=h, **kw)
        hr = None if h is None else _rows(h, axis, g)
        rows = jq.weights_qparams(_rows(w, axis, g), channel_axis=0, hessian=hr, **kw)
        c = shape[axis]
        for f, v in _params(rows).items():
            got = _params(grouped)[f]
            assert got.shape == (c, v.size // c), (shape, err, f)
            np.testing.assert_array_equal(got.ravel(), v.ravel(), err_msg=f"{shape} {err} {f}")


def test_untiled_route_groups_the_same_rows(monkeypatch, rng):
    """Tensors too large for the tiles (or with too many rows: ``tiles.MAX_ROWS``) take the
    bucketed route: grouping is the same row reshape there."""
    from jq._src.select import weights as _weights

    monkeypatch.setattr(_weights, "tiled", lambda *a: False)
    w = rng.standard_normal((6, 48)).astype(np.float32)
    for method in METHODS:
        kw = dict(method=method, error_method="mse", n_bits=4)
        grouped = jq.weights_qparams(w, group_size=16, **kw)
        rows = jq.weights_qparams(w.reshape(-1, 16), **kw)
        for f, v in _params(rows).items():
            np.testing.assert_array_equal(_params(grouped)[f], v.reshape(6, 3))


@pytest.mark.parametrize("method", METHODS)
def test_one_group_per_channel_is_per_channel(rng, method):
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    for err in ("mse", "mae", "noclipping"):
        kw = dict(method=method, error_method=err, n_bits=3)
        grouped = jq.weights_qparams(w, group_size=36, **kw)
        plain = jq.weights_qparams(w, **kw)
        for f, v in _params(plain).items():
            assert _params(grouped)[f].shape == (5, 1)
            np.testing.assert_array_equal(_params(grouped)[f].ravel(), v.ravel())


def _reference_fake_quant(w, qp, n_bits, g):
    """A plain NumPy loop over channels and groups: the deployed quantizer's arithmetic
    (``round(x * (1 / step))`` half to even, clipped to the grid; uniform: the range widened
    to 0 and zero aligned as ``torch.fake_quantize_per_channel_affine``)."""
    out = np.empty_like(w)
    c, n = w.shape
    for i in range(c):
        for j in range(n // g):
            x = w[i, j * g : (j + 1) * g]
            if qp.threshold is not None:
                t = np.float32(np.asarray(qp.threshold)[i, j])
                step = t / np.float32(2 ** (n_bits - 1))
                lo, hi, zp = -(2 ** (n_bits - 1)), 2 ** (n_bits - 1) - 1, 0
            else:
                a = min(np.float32(np.asarray(qp.range_min)[i, j]), np.float32(0))
                b = max(np.float32(np.asarray(qp.range_max)[i, j]), np.float32(0))
                step = np.float32((b - a) / np.float32(2**n_bits - 1))
                lo, hi = 0, 2**n_bits - 1
                zp = np.round(-a / step)
            q = np.clip(np.round(x * (np.float32(1) / step)) + zp, lo, hi)
            out[i, j * g : (j + 1) * g] = ((q - zp) * step).astype(np.float32)
    return out


@pytest.mark.parametrize("method", METHODS)
def test_fake_quant_per_group_matches_a_numpy_loop(rng, method):
    w = (rng.standard_normal((6, 96)) * rng.uniform(0.1, 3, (6, 1))).astype(np.float32)
    for g, n_bits in [(32, 4), (16, 8), (96, 2)]:
        qp = jq.weights_qparams(w, method=method, n_bits=n_bits, group_size=g)
        got = np.asarray(jq.fake_quant(w, qp, n_bits=n_bits, group_size=g))
        ref = _reference_fake_quant(w, qp, n_bits, g)
        # The zero point's float32 rounding may move a value by one step (uniform only).
        tol = 0 if method != "uniform" else 1e-6
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol)
        again = np.asarray(jq.fake_quant(got, qp, n_bits=n_bits, group_size=g))
        np.testing.assert_array_equal(again, got)  # on the grid: a fixed point


def test_fake_quant_per_group_of_a_conv_kernel_and_in_jit(rng):
    import jax

    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    qp = jq.weights_qparams(w, n_bits=4, group_size=6)
    got = np.asarray(jq.fake_quant(w, qp, n_bits=4, group_size=6))
    flat = _reference_fake_quant(w.reshape(4, 18), qp, 4, 6).reshape(w.shape)
    np.testing.assert_array_equal(got, flat)
    jitted = jax.jit(lambda x, t: jq.fake_quant(x, jq.QParams(threshold=t), n_bits=4, group_size=6))
    np.testing.assert_array_equal(np.asarray(jitted(w, qp.threshold)), got)


def test_per_group_is_never_worse_than_per_channel(rng):
    """More parameters can only lower each channel's MSE optimum: summed over the matrix, the
    per-group search's error is below the per-channel one (heavy-tailed rows)."""
    w = (rng.standard_t(3, (16, 256))).astype(np.float32)
    g = jq.weights_qparams(w, n_bits=4, group_size=32)
    c = jq.weights_qparams(w, n_bits=4)
    eg = np.mean((np.asarray(jq.fake_quant(w, g, n_bits=4, group_size=32)) - w) ** 2)
    ec = np.mean((np.asarray(jq.fake_quant(w, c, n_bits=4)) - w) ** 2)
    assert eg < 0.8 * ec, (eg, ec)


def test_batch_call_groups_every_tensor(rng):
    ws = [rng.standard_normal(s).astype(np.float32) for s in [(8, 64), (3, 128), (16, 32)]]
    batch = jq.weights_qparams_batch(ws, group_size=32, method="uniform", n_bits=4)
    for w, qp in zip(ws, batch, strict=True):
        one = jq.weights_qparams(w, group_size=32, method="uniform", n_bits=4)
        assert np.asarray(qp.range_min).shape == (w.shape[0], w.shape[1] // 32)
        np.testing.assert_array_equal(np.asarray(qp.range_min), np.asarray(one.range_min))
        np.testing.assert_array_equal(np.asarray(qp.range_max), np.asarray(one.range_max))


def test_group_searches_add_no_program_beyond_the_tile_set(rng):
    """Many shapes x group sizes x methods x options compile only the fixed tile programs
    (method x width x size; ``_cache_size`` counts the compiled variants of the one jitted
    search)."""
    shapes = [(o, i) for o in (4, 100) for i in (64, 96, 384)] + [(8, 4, 3, 3), (12, 8, 1, 1)]
    sizes = [8, 32, 64, 128]
    before = _ts.search_tile._cache_size()
    n = 0
    for shape in shapes:
        w = rng.standard_normal(shape).astype(np.float32)
        inputs = int(np.prod(shape[1:]))
        for g in [s for s in sizes if inputs % s == 0]:
            jq.weights_qparams(
                w,
                method=METHODS[n % 3],
                error_method=["mse", "mae", "lp", "noclipping"][n % 4],
                n_bits=2 + n % 7,
                p=1.0 + n % 3,
                group_size=g,
            )
            n += 1
    assert n == 19  # shape x group size pairs searched
    added = _ts.search_tile._cache_size() - before
    assert added <= len(METHODS) * len(_tiles.WIDTHS) * len(_tiles.SIZES), (added, n)


@given(
    c=st.integers(1, 12),
    groups=st.integers(1, 6),
    g=st.sampled_from([1, 3, 16, 32, 64]),
    method=st.sampled_from(METHODS),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=25, deadline=None)
def test_property_grouped_thresholds_and_grid(c, groups, g, method, seed):
    """Over shapes and group sizes: parameters ``(C, G)`` equal to the rows' per-channel
    search, and fake-quantized values on each group's grid (a power-of-two threshold is a
    power of two)."""
    w = np.random.default_rng(seed).standard_normal((c, groups * g)).astype(np.float32)
    qp = jq.weights_qparams(w, method=method, n_bits=4, group_size=g)
    rows = jq.weights_qparams(w.reshape(-1, g), method=method, n_bits=4)
    for f, v in _params(rows).items():
        np.testing.assert_array_equal(_params(qp)[f], v.reshape(c, groups))
    y = np.asarray(jq.fake_quant(w, qp, n_bits=4, group_size=g)).reshape(c, groups, g)
    if method != "uniform":
        t = np.asarray(qp.threshold)
        k = y / (t / 8)[..., None]
        np.testing.assert_allclose(k, np.round(k), atol=1e-4)
        assert np.all((k >= -8 - 1e-4) & (k <= 7 + 1e-4))
        if method == "power_of_two":
            np.testing.assert_array_equal(np.log2(t), np.round(np.log2(t)))
    else:
        assert all(len(np.unique(y[i, j])) <= 16 for i in range(c) for j in range(groups))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(group_size=48), "does not divide the input size 64"),
        (dict(group_size=0), "positive int"),
        (dict(group_size=True), "must be an int or None"),
        (dict(group_size=32, error_method="kl"), "kl.*no per-group mode"),
        (dict(group_size=32, mct_compat=True), "not available with mct_compat"),
        (dict(group_size=32, per_channel=False), "needs per_channel=True"),
    ],
)
def test_bad_group_size_is_refused_clearly(rng, kwargs, match):
    w = rng.standard_normal((4, 64)).astype(np.float32)
    with pytest.raises((ValueError, TypeError), match=match):
        jq.weights_qparams(w, **kwargs)


def test_fake_quant_refuses_mismatched_group_parameters(rng):
    w = rng.standard_normal((4, 64)).astype(np.float32)
    qp = jq.weights_qparams(w, group_size=32)
    with pytest.raises(ValueError, match=r"shaped \(channels, groups\) = \(4, 4\)"):
        jq.fake_quant(w, qp, group_size=16)
    with pytest.raises(ValueError, match="positive divisor"):
        jq.fake_quant(w, qp, group_size=30)
