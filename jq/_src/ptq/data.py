"""The calibration data of one PTQ call: opened once, every batch checked once, one batch loop.

:func:`open_calibration_data` calls the user's ``representative_data_gen`` and reads its first
batch (a front end needs it to trace the model); :meth:`CalibrationData.batches` then yields
the checked batches of a pass over the data: the first pass continues the iterator already
opened, a later pass (AUTO's evaluation) calls the generator again. :func:`accumulate` is the
per-batch loop every pass shares (statistics, AUTO's sums, SQNR): the graph for the batch's
shapes, one compiled step, the new state.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np

from ..graph.graph import Graph

S = TypeVar("S")
T = TypeVar("T")
Arrays = tuple[np.ndarray, ...]
Shapes = tuple[tuple[int, ...], ...]


def _progress(iterable: Iterable[T], enabled: bool, desc: str) -> Iterable[T]:
    """``iterable`` behind a tqdm bar when ``enabled`` (and tqdm is installed)."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return iterable
    return tqdm(iterable, desc=desc, leave=False)


def check_batch(batch: Any, index: int, n_inputs: int, fn: str) -> tuple[np.ndarray, ...]:
    """One representative batch as a tuple of NumPy arrays; rejects bad input with a clear error.

    Accepts a list/tuple of arrays (MCT's convention) or a single array (one-input models);
    front ends convert their tensors first (``jq_torch`` does). Float arrays are cast to
    float32 and must be finite.
    """
    if isinstance(batch, (list, tuple)):
        items = list(batch)
    else:
        items = [batch]
    if len(items) != n_inputs:
        raise ValueError(
            f"{fn}: representative batch {index} has {len(items)} input(s); the model takes "
            f"{n_inputs}"
        )
    out = []
    for j, x in enumerate(items):
        try:
            a = np.asarray(x)
        except Exception as e:
            raise TypeError(
                f"{fn}: representative batch {index}, input {j}: expected an array or tensor, "
                f"got {type(x).__name__}"
            ) from e
        if a.dtype == object or not (
            np.issubdtype(a.dtype, np.floating)
            or np.issubdtype(a.dtype, np.integer)
            or a.dtype == np.bool_
        ):
            raise TypeError(
                f"{fn}: representative batch {index}, input {j}: expected a real numeric array, "
                f"got dtype {a.dtype}"
            )
        if a.size == 0:
            raise ValueError(f"{fn}: representative batch {index}, input {j} is empty")
        if np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                what = "NaN" if np.isnan(a).any() else "inf"
                raise ValueError(
                    f"{fn}: representative batch {index}, input {j} contains {what}; "
                    "statistics need finite data"
                )
            a = a.astype(np.float32)
        out.append(a)
    return tuple(out)


def _positional(call: Callable, given: Iterable[str]) -> tuple[list[str], int, bool] | None:
    """``(names, number required, takes *args)`` of ``call``'s positional parameters not in
    ``given`` (passed by keyword), or ``None`` when its signature cannot be read."""
    try:
        sig = inspect.signature(call)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    given = set(given)
    params = [p for p in sig.parameters.values() if p.kind in kinds and p.name not in given]
    required = sum(p.default is inspect.Parameter.empty for p in params)
    star = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values())
    return [p.name for p in params], required, star


def input_names(call: Callable, given: Iterable[str] = ()) -> list[str]:
    """The names of ``call``'s positional parameters (``[]`` when unreadable)."""
    return (_positional(call, given) or ([], 0, False))[0]


def check_input_count(
    call: Callable, n_arrays: int, fn: str, owner: str, given: Iterable[str] = ()
) -> None:
    """Reject a first batch whose number of arrays ``call`` (the model's forward) cannot take
    positionally, before any tracing runs.

    Args:
      call: the bound forward (``model.forward``, ``module.__call__``).
      n_arrays: the number of arrays in representative batch 0.
      fn: the entry point's name; owner: how the message names ``call`` (``"Net.forward"``).
      given: parameters passed by keyword (not filled by the batch).

    Raises:
      ValueError: e.g. ``"representative batch 0 has 2 arrays; Net.forward takes 1 input
        (x); ..."`` (a ``(x, label)`` batch for a one-input model).
    """
    pos = _positional(call, given)
    if pos is None:
        return
    names, required, star = pos
    if required <= n_arrays and (star or n_arrays <= len(names)):
        return
    n = len(names)
    takes = f"{required} to {n} inputs" if required < n else f"{n} input{'s' if n != 1 else ''}"
    hint = (
        "; a batch is a list or tuple with one array per model input (yield [x], not (x, label))"
        if n_arrays > n and not star
        else ""
    )
    raise ValueError(
        f"{fn}: representative batch 0 has {n_arrays} array{'s' if n_arrays != 1 else ''}; "
        f"{owner} takes {takes} ({', '.join(names) or 'none'}){hint}"
    )


def check_shapes(
    arrays: Sequence[np.ndarray], expected: Sequence[tuple[int, ...] | None], index: int, fn: str
) -> None:
    """Every input must match ``expected`` except on the batch axis (0)."""
    for j, (a, e) in enumerate(zip(arrays, expected, strict=True)):
        if e is None:
            continue
        if a.ndim != len(e) or tuple(a.shape[1:]) != tuple(e[1:]):
            raise ValueError(
                f"{fn}: representative batch {index}, input {j} has shape {tuple(a.shape)}; "
                f"expected (batch, {', '.join(map(str, e[1:]))}) like the first batch {tuple(e)}"
            )


class CalibrationData:
    """The representative dataset of one PTQ call (see :func:`open_calibration_data`).

    Attributes:
      first: the first batch, checked (one array per model input; floats as float32).
      n_inputs: the number of arrays per batch.
      fn: the entry point's name, used in error messages.
    """

    def __init__(self, gen: Callable[[], Any], it: Iterator, first: Arrays, fn: str) -> None:
        self._gen = gen
        self._rest: Iterator | None = it
        self.first = first
        self.n_inputs = len(first)
        self.fn = fn

    @property
    def shapes(self) -> Shapes:
        """The first batch's shapes."""
        return tuple(tuple(a.shape) for a in self.first)

    def batches(self, *, progress: bool = False, desc: str = "jq") -> Iterator[Arrays]:
        """The checked batches of one pass over the data.

        The first call continues the iterator opened by :func:`open_calibration_data` (its
        first batch included); later calls start ``representative_data_gen()`` afresh. Every
        batch has the first batch's number of inputs, non-batch dimensions and dtype kinds.
        """
        if self._rest is not None:
            rest, self._rest = self._rest, None
            raw: Iterable = itertools.chain([self.first], rest)
        else:
            raw = self._gen()
        for i, batch in enumerate(_progress(raw, progress, desc)):
            yield self.first if i == 0 and batch is self.first else self._check(batch, i)

    def _check(self, batch: Any, i: int) -> Arrays:
        arrays = check_batch(batch, i, self.n_inputs, self.fn)
        check_shapes(arrays, self.shapes, i, self.fn)
        for j, (a, f) in enumerate(zip(arrays, self.first, strict=True)):
            if a.dtype.kind != f.dtype.kind:
                raise TypeError(
                    f"{self.fn}: representative batch {i}, input {j} has dtype {a.dtype}; the "
                    f"first batch had {f.dtype}"
                )
        return arrays


def open_calibration_data(
    representative_data_gen: Callable[[], Any] | CalibrationData,
    fn: str,
    n_inputs: int | None = None,
) -> CalibrationData:
    """Open the user's data once and check its first batch.

    Args:
      representative_data_gen: a callable returning an iterable of batches; a batch is a list
        or tuple with one array per model input (MCT's convention) or one array. Data
        opened already (a :class:`CalibrationData`) is returned as it is, its number of
        inputs checked against ``n_inputs``.
      fn: the entry point's name, used in error messages.
      n_inputs: the model's number of inputs (default: the first batch's).

    Raises:
      TypeError: ``representative_data_gen`` is not callable or returns no iterable; a batch
        holds something other than real numeric arrays.
      ValueError: no batch, a wrong number of inputs, empty or non-finite data.
    """
    if isinstance(representative_data_gen, CalibrationData):
        data = representative_data_gen
        if n_inputs is not None and data.n_inputs != n_inputs:
            raise ValueError(
                f"{fn}: representative batch 0 has {data.n_inputs} input(s); the model takes "
                f"{n_inputs}"
            )
        return data
    if not callable(representative_data_gen):
        raise TypeError(
            f"{fn}: representative_data_gen must be a callable returning an iterable of batches, "
            f"got {type(representative_data_gen).__name__}"
        )
    try:
        it = iter(representative_data_gen())
    except TypeError as e:
        raise TypeError(f"{fn}: representative_data_gen() did not return an iterable") from e
    try:
        batch = next(it)
    except StopIteration:
        raise ValueError(f"{fn}: representative_data_gen yielded no batch") from None
    if n_inputs is None:
        n_inputs = len(batch) if isinstance(batch, (list, tuple)) else 1
    return CalibrationData(representative_data_gen, it, check_batch(batch, 0, n_inputs, fn), fn)


RETAIN_BYTES = 256 * 2**20  # whole batches kept for SQNR and AUTO's check: at most 256 MiB


class Retained(NamedTuple):
    """What the first pass keeps of the data for later passes (immutable; :func:`retain`
    returns the next one).

    Attributes:
      batches: up to ``n_batches`` whole batches of the first batch's shapes, at most
        ``max_bytes`` in all (the first batch is kept whatever its size) (SQNR, AUTO's
        model-level check).
      samples: per input, up to ``n_samples`` single samples ``(1, ...)`` (Hessian scores).
    """

    batches: tuple[Arrays, ...]
    samples: tuple[tuple[np.ndarray, ...], ...]


def nothing_retained(n_inputs: int) -> Retained:
    """The :class:`Retained` record before any batch, for ``n_inputs`` graph inputs."""
    return Retained((), tuple(() for _ in range(n_inputs)))


def retain(
    kept: Retained,
    arrays: Arrays,
    *,
    shapes: Shapes,
    n_batches: int,
    n_samples: int,
    max_bytes: int = RETAIN_BYTES,
) -> Retained:
    """``kept`` after batch ``arrays``: the batch joins ``kept.batches`` if it has the first
    batch's ``shapes`` and fits (at most ``n_batches`` batches and ``max_bytes``, or the first
    batch), and its first samples join ``kept.samples`` up to ``n_samples`` (copies: a view
    would keep its whole batch alive)."""
    batches = kept.batches
    used = sum(a.nbytes for b in batches for a in b)
    fits = not batches or used + sum(a.nbytes for a in arrays) <= max_bytes
    same = tuple(a.shape for a in arrays) == shapes
    if len(batches) < n_batches and same and fits:
        batches = (*batches, arrays)
    have = len(kept.samples[0]) if kept.samples else 0
    take = min(n_samples - have, arrays[0].shape[0]) if have < n_samples else 0
    samples = tuple(
        (*s, *(a[k : k + 1].copy() for k in range(take)))
        for s, a in zip(kept.samples, arrays, strict=True)
    )
    return Retained(batches, samples)


def accumulate(
    batches: Iterable[Arrays],
    graphs: Callable[[Shapes], Graph],
    step: Callable[[S, Graph, Arrays], S],
    state: S,
) -> tuple[S, int]:
    """The per-batch loop of every pass: ``state = step(state, graph, arrays)`` for each batch,
    ``graph = graphs(shapes)`` the float graph the batch runs through (the step puts the arrays
    on the device).

    Returns ``(state, number of batches)``.
    """
    count = 0
    for arrays in batches:
        graph = graphs(tuple(tuple(a.shape) for a in arrays))
        state = step(state, graph, arrays)
        count += 1
    return state, count
