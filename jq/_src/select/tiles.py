"""Fixed-size tiles: the rows of many tensors packed so that one compiled search serves them all.

A weight search treats a tensor as rows (one per channel, or one for the whole tensor) whose
losses are sums over their elements, coupled only through the tensor's early stop. So the
default-mode searches (:mod:`.tile_search`) run on tiles of a few fixed shapes ``(R, L)``
whatever the tensors: each row is cut into pieces of ``L`` values, one piece per tile row
(the last one padded with zeros), and every tile row records its row slot and how many of its
columns are real. Per-row sums are then one masked sum per tile row and a segment sum.

The row width ``L`` is :data:`WIDTHS`' first entry for rows shorter than its second, else the
second: conv kernels' rows (``9 * c_in``, ``c_in``) pad little at 128. All of a tensor's rows
lie in one tile (its early stop reads all of them). Tile rows past the last piece belong to a
"dummy" row slot, the tile's last, whose results are discarded. A tensor too large for the
largest tile is not tiled (the caller searches it another way).
"""

from __future__ import annotations

from typing import NamedTuple, cast

import numpy as np

# Tile row widths: rows shorter than WIDTHS[1] go to tiles of width WIDTHS[0].
WIDTHS = (16, 128)
# Tile sizes in elements: the smallest that holds a call's tensors of a width class is used.
SIZES = (2**14, 2**18, 2**22)
# Row slots per tile (the last one is the dummy row): bounds the per-row state and the
# per-round error record of ``return_errors``.
MAX_ROWS = 8192


class Tile(NamedTuple):
    """One packed tile (host arrays).

    Attributes:
      x: float32 ``(R, L)`` values, padding 0.
      w: float32 ``(R, L)`` HMSE weights (``sqrt`` of the scores) or ``None``.
      row: int32 ``(R,)`` the row slot of each tile row.
      cols: int32 ``(R,)`` the real columns of each tile row (the first ``cols``).
      n: float32 ``(M,)`` elements per row slot (1 for unused and dummy slots).
      tensor: int32 ``(M,)`` the tensor slot of each row slot (unused slots: their own).
      channels: float32 ``(M,)`` rows per tensor slot (1 for unused slots).
      active: bool ``(M,)`` row slots that hold a real row.
      members: ``[(tensor index in the call, first row slot, rows)]``.
    """

    x: np.ndarray
    w: np.ndarray | None
    row: np.ndarray
    cols: np.ndarray
    n: np.ndarray
    tensor: np.ndarray
    channels: np.ndarray
    active: np.ndarray
    members: list[tuple[int, int, int]]


def width_of(n: int) -> int:
    """The tile row width for rows of ``n`` elements."""
    return WIDTHS[0] if n < WIDTHS[1] else WIDTHS[1]


def tile_rows_needed(rows: int, n: int, width: int) -> int:
    """Tile rows a ``(rows, n)`` tensor takes in a tile of row width ``width``."""
    return rows * -(-n // width)


def fits(rows: int, n: int) -> bool:
    """Whether a ``(rows, n)`` tensor fits the largest tile of its width class."""
    width = width_of(n)
    return rows < MAX_ROWS and tile_rows_needed(rows, n, width) * width <= SIZES[-1]


def pack(
    arrays: list[np.ndarray], weights: list[np.ndarray] | None, width: int, size: int | None = None
) -> list[Tile]:
    """Packs ``(C, N)`` arrays of one width class into tiles, greedily in order.

    Args:
      arrays: float ``(C_i, N_i)`` arrays, each :func:`fits` and of width class ``width``.
      weights: matching HMSE weights, or ``None``.
      width: the tiles' row width ``L``.
      size: the tile size in elements; default the smallest of :data:`SIZES` holding them all
        (the largest when none does).

    Returns:
      Tiles holding every array (``members`` index ``arrays``). An array larger than the
      smallest tile gets a tile of its own: a tile's search runs until its last tensor stops,
      and a tile of one large tensor ends with it (small ones share tiles: they cost little).
    """
    if size is None and len(arrays) > 1:
        big = [i for i, a in enumerate(arrays) if a.size > SIZES[0]]
        if big:
            small = [i for i in range(len(arrays)) if i not in set(big)]
            tiles = [_renumber(pack([arrays[i]], _pick(weights, [i]), width), [i]) for i in big]
            if small:
                tiles.append(
                    _renumber(pack([arrays[i] for i in small], _pick(weights, small), width), small)
                )
            return [t for group in tiles for t in group]
    needs = [tile_rows_needed(a.shape[0], a.shape[1], width) for a in arrays]
    if size is None:
        total = sum(needs) * width
        size = next((s for s in SIZES if s >= total), SIZES[-1])
    capacity = size // width
    groups: list[list[int]] = [[]]
    used = rows = 0
    for i, (need, a) in enumerate(zip(needs, arrays, strict=True)):
        if groups[-1] and (used + need > capacity or rows + a.shape[0] >= MAX_ROWS):
            groups.append([])
            used = rows = 0
        groups[-1].append(i)
        used, rows = used + need, rows + a.shape[0]
    return [_fill(arrays, weights, g, width, capacity) for g in groups if g]


def _pick(weights: list[np.ndarray] | None, idx: list[int]) -> list[np.ndarray] | None:
    return None if weights is None else [weights[i] for i in idx]


def _renumber(tiles: list[Tile], idx: list[int]) -> list[Tile]:
    """``tiles`` of ``arrays[idx]`` with their members numbered in ``arrays``."""
    return [t._replace(members=[(idx[m], s, c) for m, s, c in t.members]) for t in tiles]


def _fill(
    arrays: list[np.ndarray],
    weights: list[np.ndarray] | None,
    members: list[int],
    width: int,
    capacity: int,
) -> Tile:
    """One tile of ``capacity`` tile rows holding ``arrays[i]`` for ``i`` in ``members``."""
    m = min(capacity, MAX_ROWS - 1) + 1
    x = np.zeros((capacity, width), np.float32)
    w = None if weights is None else np.zeros_like(x)
    row = np.full(capacity, m - 1, np.int32)
    cols = np.zeros(capacity, np.int32)
    n = np.ones(m, np.float32)
    tensor = np.arange(m, dtype=np.int32)
    channels = np.ones(m, np.float32)
    active = np.zeros(m, bool)
    placed = []
    pos = slot = 0
    for t, i in enumerate(members):
        c, length = arrays[i].shape
        per_row = -(-length // width)
        span = slice(pos, pos + c * per_row)
        _place(x, span, arrays[i], per_row, width)
        if w is not None:
            _place(w, span, cast("list[np.ndarray]", weights)[i], per_row, width)
        row[span] = np.repeat(np.arange(slot, slot + c, dtype=np.int32), per_row)
        last = length - (per_row - 1) * width
        cols[span] = np.tile(np.r_[np.full(per_row - 1, width), last].astype(np.int32), c)
        n[slot : slot + c] = length
        tensor[slot : slot + c] = t
        channels[t] = c
        active[slot : slot + c] = True
        placed.append((i, slot, c))
        pos, slot = span.stop, slot + c
    return Tile(x, w, row, cols, n, tensor, channels, active, placed)


def _place(out: np.ndarray, span: slice, a: np.ndarray, per_row: int, width: int) -> None:
    """Writes the ``(C, N)`` array ``a`` into ``out[span]``, each row over ``per_row`` tile
    rows of ``width`` (zero padded)."""
    c, length = a.shape
    padded = np.zeros((c, per_row * width), np.float32)
    padded[:, :length] = a
    out[span] = padded.reshape(c * per_row, width)
