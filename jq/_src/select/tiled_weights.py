"""A default-mode weights call on tiles: pack, search each tile, unpack per tensor.

The route :func:`jq.weights_qparams_batch` takes in the default mode (``mct_compat=False``) for
every error method but KL, whenever each tensor fits the largest tile (:func:`.tiles.fits`)
and no mesh is given: its compiled programs are then the fixed set of :mod:`.tile_search`
(method x tile shape), whatever the shapes and numeric options of the calls.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from . import tile_search as _ts
from . import tiles as _tiles
from .enums import ErrorMethod, QuantizationMethod
from .quantizers import absmax_factor
from .search import SearchResult

SYMMETRIC_ROUNDS = {False: (40, 5), True: (15, 3)}  # per_channel -> (rounds, decrement freq)
UNIFORM_ROUNDS = {False: 30, True: 10}


def tiled(x2ds: list[np.ndarray], error_method: ErrorMethod) -> bool:
    """Whether a call on these ``(C, N)`` layouts takes the tiled route."""
    if error_method is ErrorMethod.KL:
        return False
    return all(_tiles.fits(*x.shape) for x in x2ds)


def search_tiled(
    x2ds: list[np.ndarray],
    w2ds: list[np.ndarray] | None,
    *,
    method: QuantizationMethod,
    error_method: ErrorMethod,
    n_bits: int,
    per_channel: bool,
    p: float,
    min_threshold: float,
    return_errors: bool,
    devices: list[Any] | None = None,
) -> list[SearchResult]:
    """Every tensor's search result (host arrays, its own ``C`` rows), as the bucketed
    default-mode search returns them. ``devices``: the tiles go to them in turn (the same
    programs and results as on one device)."""
    opts, rounds = _options(method, error_method, n_bits, per_channel, p, min_threshold)
    by_width: dict[int, list[int]] = {}
    for i, x in enumerate(x2ds):
        by_width.setdefault(_tiles.width_of(x.shape[1]), []).append(i)
    pending: list[Any] = []
    for width, idx in by_width.items():
        ws = None if w2ds is None else [w2ds[i] for i in idx]
        for tile in _tiles.pack([x2ds[i] for i in idx], ws, width):
            device = None if not devices else devices[len(pending) % len(devices)]
            rows, opts_d = _device_rows(tile, device), jax.device_put(opts, device)
            res = _ts.search_tile(rows, opts_d, method=method, keep_errors=return_errors)
            pending.append((idx, tile, res))  # dispatched: the tiles run while the next packs
    out: dict[int, SearchResult] = {}
    for idx, tile, res in pending:
        res = jax.device_get(res)
        for member, slot, c in tile.members:
            out[idx[member]] = _rows_of(res, slot, c, method, error_method, rounds, return_errors)
    return [out[i] for i in range(len(x2ds))]


def _options(
    method: QuantizationMethod,
    error_method: ErrorMethod,
    n_bits: int,
    per_channel: bool,
    p: float,
    min_threshold: float,
) -> tuple[_ts.Options, int]:
    """The runtime :class:`~.tile_search.Options` and the round count of the record."""
    if method is QuantizationMethod.UNIFORM:
        rounds, freq = UNIFORM_ROUNDS[per_channel], 1
    else:
        rounds, freq = SYMMETRIC_ROUNDS[per_channel]
    opts = _ts.Options(
        kind=np.int32(_ts.KINDS.index(error_method)),
        n_bits=np.int32(n_bits),
        p=np.float32(p),
        min_threshold=np.float32(min_threshold),
        absmax_factor=np.float32(absmax_factor(n_bits, method is QuantizationMethod.UNIFORM)),
        rounds=np.int32(rounds),
        dec_freq=np.int32(freq),
    )
    return opts, rounds


def _device_rows(tile: _tiles.Tile, device: Any = None) -> _ts._Rows:
    x = jax.device_put(tile.x, device)
    w = x if tile.w is None else jax.device_put(tile.w, device)
    rest = (tile.row, tile.cols, tile.n, tile.tensor, tile.channels, tile.active)
    return _ts._Rows(x, w, *jax.device_put(rest, device))


def _rows_of(
    res: SearchResult,
    slot: int,
    c: int,
    method: QuantizationMethod,
    error_method: ErrorMethod,
    rounds: int,
    return_errors: bool,
) -> Any:
    """One tensor's rows of a tile's result, shaped as the bucketed search's."""
    rows = slice(slot, slot + c)
    param: Any = np.asarray(res.param[rows])
    loss: Any = np.asarray(res.loss[rows])
    if not return_errors or error_method is ErrorMethod.NOCLIPPING:
        empty: Any = np.zeros((0, c), param.dtype)
        return SearchResult(param, loss, empty, empty)
    if method is QuantizationMethod.POWER_OF_TWO:
        return SearchResult(param, loss, res.errors[:, rows], res.candidates[:, rows])
    return SearchResult(param, loss, res.errors[:rounds, :, rows], res.candidates[:rounds, :, rows])


def warmup(keep_errors: bool = False) -> int:
    """Compiles every default-mode weight search program (each method x tile width x tile
    size) so that they reach the persistent compilation cache; returns how many ran.

    A tile with one tiny row serves as the argument: the program depends only on the tile's
    shape, so it is the program every later call of that shape class runs.
    """
    from ..runtime.cache import ensure_compilation_cache

    ensure_compilation_cache()
    count = 0
    for width in _tiles.WIDTHS:
        for size in _tiles.SIZES:
            row = np.ones((1, width), np.float32)
            tile = _tiles.pack([row], None, width, size)[0]
            for method in QuantizationMethod:
                opts, _ = _options(method, ErrorMethod.MSE, 8, True, 2.0, 2.0**-16)
                jax.block_until_ready(  # type: ignore[no-untyped-call]
                    _ts.search_tile(
                        _device_rows(tile), opts, method=method, keep_errors=keep_errors
                    )
                )
                count += 1
    return count
