"""Calibration over several devices: the mesh a PTQ call splits its batches over, and the
collectives that combine the shards' statistics.

A batch is split along its batch axis over every axis of the mesh; each device runs the float
graph on its share and the statistics step combines the shares with ``pmin`` / ``pmax`` /
``psum`` inside one ``shard_map``ped program (:mod:`jq._src.ptq.calibrate`). Histogram counts are
exact integers and the grid is a function of the global range, so the statistics, and every
threshold chosen from them, do not depend on the number of devices.

With several processes (``jax.distributed.initialize``) the mesh spans every process's devices
and each process's data generator yields its own share of each batch (the same batch size on
every process); the statistics step is one program across them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"
T = TypeVar("T")
_NEXT, _END, _FAILED = 1, 0, 2  # a process's status at each step of the lockstep
_MESSAGE = 400  # characters of a failed process's error message sent to the others


class Shards(NamedTuple):
    """A batch split over ``mesh`` along all its axes (static, hashable).

    Attributes:
      mesh: the devices.
      explicit: the user passed the mesh (a batch that does not split evenly is an error);
        ``False`` for the default mesh of all devices (such a batch runs on one device).
    """

    mesh: Mesh
    explicit: bool

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(self.mesh.axis_names)

    @property
    def size(self) -> int:
        return int(self.mesh.devices.size)

    def spec(self) -> PartitionSpec:
        """The partition of a batch: its first axis over all mesh axes."""
        return PartitionSpec(self.axes)


class Reduce(NamedTuple):
    """The collectives of a statistics step: over ``axes`` inside ``shard_map``, identities
    on one device (``axes=None``). Static, hashable."""

    axes: tuple[str, ...] | None = None
    size: int = 1

    def min(self, x: jax.Array) -> jax.Array:
        return x if self.axes is None else jax.lax.pmin(x, self.axes)

    def max(self, x: jax.Array) -> jax.Array:
        return x if self.axes is None else jax.lax.pmax(x, self.axes)

    def sum(self, x: jax.Array) -> jax.Array:
        return x if self.axes is None else jax.lax.psum(x, self.axes)

    def position(self) -> jax.Array | int:
        """This shard's position along the batch (0 on one device)."""
        return 0 if self.axes is None else jax.lax.axis_index(self.axes)


def search_mesh(shards: Shards | None) -> Mesh | None:
    """The devices the kernel and activation searches split their tensors over: this
    process's devices of ``shards``' mesh (every process runs the same searches on the same
    statistics, so they need no data from the others)."""
    if shards is None:
        return None
    pid = jax.process_index()
    local = [d for d in shards.mesh.devices.flat if d.process_index == pid]
    return Mesh(np.asarray(local), (BATCH_AXIS,)) if len(local) > 1 else None


def resolve_mesh(mesh: Any, fn: str) -> Shards | None:
    """The :class:`Shards` of a PTQ call's ``mesh`` argument.

    Args:
      mesh: a ``jax.sharding.Mesh``; ``None`` for all devices when more than one is visible;
        ``False`` for one device.
      fn: the entry point's name, used in error messages.

    Raises:
      TypeError: ``mesh`` is something else.
      ValueError: ``mesh=False`` in a job of several processes (each would calibrate on its
        own data and quantize differently).
    """
    if mesh is False:
        if jax.process_count() > 1:
            raise ValueError(
                f"{fn}: mesh=False in a job of {jax.process_count()} processes; calibration "
                "must span every process's devices (mesh=None or a Mesh over jax.devices())"
            )
        return None
    if mesh is None:
        devices = jax.devices()
        if len(devices) < 2:
            return None
        return Shards(Mesh(np.asarray(devices), (BATCH_AXIS,)), explicit=False)
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"{fn}: mesh must be a jax.sharding.Mesh, None (all devices) or False (one "
            f"device), got {type(mesh).__name__}"
        )
    return Shards(mesh, explicit=True) if mesh.devices.size > 1 else None


def for_batch(shards: Shards | None, batch: int, fn: str) -> Shards | None:
    """The shards a batch of ``batch`` samples (this process's share) runs on (``None``: one
    device).

    Raises:
      ValueError: an explicit mesh, or several processes, and a batch that does not split
        evenly over the devices.
    """
    total = batch * jax.process_count()
    if shards is None or total % shards.size == 0:
        return shards
    if shards.explicit or jax.process_count() > 1:
        raise ValueError(
            f"{fn}: a calibration batch of {total} samples does not split evenly over the "
            f"mesh's {shards.size} devices; use batch sizes that are multiples of {shards.size}"
        )
    return None


def local_shapes(shapes: Sequence[tuple[int, ...]], shards: Shards | None):
    """Each device's share of inputs of ``shapes`` (this process's batch, batch axis first)."""
    if shards is None:
        return tuple(tuple(s) for s in shapes)
    n = jax.process_count()
    return tuple((s[0] * n // shards.size, *s[1:]) for s in shapes)


def put_batch(arrays: Sequence[np.ndarray], shards: Shards | None) -> tuple[jax.Array, ...]:
    """The batch on the devices: split along its first axis over ``shards``' mesh (each
    process holding its share)."""
    if shards is None:
        return tuple(jax.device_put(a) for a in arrays)
    sharding = NamedSharding(shards.mesh, shards.spec())
    if jax.process_count() > 1:
        return tuple(jax.make_array_from_process_local_data(sharding, a) for a in arrays)
    return tuple(jax.device_put(a, sharding) for a in arrays)


def check_single_process_options(uses_local_data: list[str], fn: str) -> None:
    """Refuse options whose passes read this process's data alone (they would choose
    differently on each process).

    Raises:
      NotImplementedError: in a job of several processes, naming the options.
    """
    if jax.process_count() > 1 and uses_local_data:
        raise NotImplementedError(
            f"{fn}: {', '.join(uses_local_data)} reads the calibration data outside the "
            f"sharded statistics pass, which a job of {jax.process_count()} processes does not "
            "support yet (each process would choose differently)"
        )


def _gather(status: int, message: str = "") -> list[tuple[int, str]]:
    """Every process's ``(status, message)``: one small all-gather across the job."""
    from jax.experimental import multihost_utils  # only jobs of several processes get here

    buf = np.zeros(1 + _MESSAGE, np.int32)
    text = message.encode("utf-8", "replace")[:_MESSAGE]
    buf[0], buf[1 : 1 + len(text)] = status, np.frombuffer(text, np.uint8)
    rows = np.asarray(multihost_utils.process_allgather(buf)).reshape(-1, 1 + _MESSAGE)
    return [(int(r[0]), bytes(r[1:].astype(np.uint8)).rstrip(b"\0").decode()) for r in rows]


def _check(statuses: list[tuple[int, str]], n_done: int, fn: str) -> None:
    failed = [(i, m) for i, (st, m) in enumerate(statuses) if st == _FAILED]
    if failed:
        i, message = failed[0]
        raise RuntimeError(f"{fn}: process {i} failed while calibrating: {message}")
    ended = [i for i, (st, _) in enumerate(statuses) if st == _END]
    if ended and len(ended) < len(statuses):
        more = [i for i in range(len(statuses)) if i not in ended]
        raise ValueError(
            f"{fn}: the data of process(es) {ended} ended after {n_done} batches while "
            f"process(es) {more} had more; every process must yield the same number of batches"
        )


def report_failure(err: BaseException) -> None:
    """Tell the other processes of the job (waiting at their next step of :func:`lockstep`)
    that this one failed, with ``err``'s message; nothing on one process."""
    if jax.process_count() > 1:
        _gather(_FAILED, f"{type(err).__name__}: {err}")


def lockstep(batches: Iterable[T], fn: str) -> Iterator[T]:
    """``batches``, each yielded once every process of the job has its next batch too.

    A process whose data raise sends the error to the others and raises it; the others raise
    an error naming that process. Data that end on some processes only are an error on all.
    One process: ``batches`` unchanged.

    Raises:
      RuntimeError: another process failed (its index and message).
      ValueError: the processes' data have different numbers of batches.
    """
    if jax.process_count() == 1:
        yield from batches
        return
    it, n = iter(batches), 0
    while True:
        try:
            arrays = next(it)
        except StopIteration:
            _check(_gather(_END), n, fn)
            return
        except Exception as err:
            report_failure(err)
            raise
        _check(_gather(_NEXT), n, fn)
        n += 1
        yield arrays
