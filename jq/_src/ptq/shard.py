"""Calibration over several devices: the mesh a PTQ call splits its batches over, and the
collectives that combine the shards' statistics.

A batch is split along its batch axis over every axis of the mesh; each device runs the float
graph on its share and the statistics step combines the shares with ``pmin`` / ``pmax`` /
``psum`` inside one ``shard_map``ped program (:mod:`jq._src.ptq.calibrate`). Histogram counts are
exact integers and the grid is a function of the global range, so the statistics, and every
threshold chosen from them, do not depend on the number of devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


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


def resolve_mesh(mesh: Any, fn: str) -> Shards | None:
    """The :class:`Shards` of a PTQ call's ``mesh`` argument.

    Args:
      mesh: a ``jax.sharding.Mesh``; ``None`` for all devices when more than one is visible;
        ``False`` for one device.
      fn: the entry point's name, used in error messages.

    Raises:
      TypeError: ``mesh`` is something else.
    """
    if mesh is False:
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
    """The shards a batch of ``batch`` samples runs on (``None``: one device).

    Raises:
      ValueError: an explicit mesh that does not divide the batch.
    """
    if shards is None or batch % shards.size == 0:
        return shards
    if shards.explicit:
        raise ValueError(
            f"{fn}: a calibration batch of {batch} samples does not split evenly over the "
            f"mesh's {shards.size} devices; use batch sizes that are multiples of {shards.size}"
        )
    return None


def local_shapes(shapes: Sequence[tuple[int, ...]], shards: Shards | None):
    """Each device's share of inputs of ``shapes`` (batch axis first)."""
    if shards is None:
        return tuple(tuple(s) for s in shapes)
    return tuple((s[0] // shards.size, *s[1:]) for s in shapes)


def put_batch(arrays: Sequence[np.ndarray], shards: Shards | None) -> tuple[jax.Array, ...]:
    """The batch on the devices: split along its first axis over ``shards``' mesh."""
    if shards is None:
        return tuple(jax.device_put(a) for a in arrays)
    sharding = NamedSharding(shards.mesh, shards.spec())
    return tuple(jax.device_put(a, sharding) for a in arrays)
