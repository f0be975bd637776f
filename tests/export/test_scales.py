"""The scale mapping against a plain NumPy reference of its formulas (exact in float32:
powers of two for thresholds; uniform scales computed the same way, compared to 1 ulp)."""

from __future__ import annotations

import numpy as np
import pytest

from jq.exporter import grid_from_levels, scale_zero_point


@pytest.mark.parametrize("n_bits", [2, 4, 8, 16])
@pytest.mark.parametrize("signed", [True, False])
def test_threshold_scales(n_bits, signed):
    t = np.array([0.25, 1.0, 4.0, 8.0], np.float32)
    g = scale_zero_point(n_bits, threshold=t, signed=signed)
    want = t / np.float32(2.0 ** (n_bits - 1) if signed else 2.0**n_bits)
    np.testing.assert_array_equal(g.scale, want)
    assert np.all(g.zero_point == 0)
    width = 8 if n_bits <= 8 else 16
    assert g.dtype == ("int" if signed else "uint") + str(width) and g.n_bits == n_bits


def test_uniform_scale_and_zero_point_round_half_to_even():
    lo, hi = np.float32(-1.0), np.float32(3.0)
    g = scale_zero_point(8, range_min=lo, range_max=hi)
    scale = (hi - lo) / np.float32(255)
    np.testing.assert_allclose(g.scale, scale, rtol=1.2e-7)
    assert int(g.zero_point) == int(np.round(-lo / scale)) and g.dtype == "uint8"
    # A range whose zero lies on the grid keeps its ends: scale and zero point as written.
    g = scale_zero_point(
        8, range_min=np.float32(-64 / 255 * 4), range_max=np.float32(191 / 255 * 4)
    )
    assert int(g.zero_point) == 64


def test_levels_to_storage():
    assert grid_from_levels(np.float32(0.5), -128.0, 127.0)[1:] == (0, "int8", 8)
    g = grid_from_levels(np.float32(0.1), -3.0, 252.0)
    assert (int(g.zero_point), g.dtype) == (3, "uint8")
    g = grid_from_levels(np.float32(0.1), -8.0, 7.0)  # 4-bit signed: int8 storage, zero 0
    assert (int(g.zero_point), g.dtype, g.n_bits) == (0, "int8", 4)
    g = grid_from_levels(np.float32(0.1), 0.0, 65535.0)
    assert (g.dtype, g.n_bits) == ("uint16", 16)
    with pytest.raises(ValueError, match="integers"):
        grid_from_levels(np.float32(0.1), -1.5, 2.0)
    with pytest.raises(ValueError, match="no ONNX integer type"):
        grid_from_levels(np.float32(0.1), 0.0, 2.0**20)
