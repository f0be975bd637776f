"""Splitting a batch of independent searches over the devices of a mesh.

The batched searches (``weights_qparams_batch``, ``activation_qparams_batch``) search a stack
of tensors or histograms, each independently of the others. With a ``mesh`` the stack's leading
axis is padded to a multiple of the mesh's size (with copies of its last entry) and split over
all of its axes with ``shard_map``: each device searches its share, and the results come back
in order. Every entry's search is the same computation as on one device, so the results equal
the unsharded call's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec


def check_mesh(mesh: Any, fn: str) -> Mesh | None:
    """``mesh`` if it is a ``jax.sharding.Mesh`` of several devices, ``None`` for ``None`` or
    one device.

    Raises:
      TypeError: ``mesh`` is something else.
    """
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"{fn}: mesh must be a jax.sharding.Mesh or None, got {type(mesh).__name__}"
        )
    return mesh if mesh.devices.size > 1 else None


def padded_length(n: int, mesh: Mesh | None) -> int:
    """``n`` rounded up to a multiple of the mesh's number of devices."""
    size = 1 if mesh is None else int(mesh.devices.size)
    return -(-n // size) * size


def pad_leading(tree: Any, length: int) -> Any:
    """Every (host) array leaf of ``tree`` with its leading axis padded to ``length`` by
    repeating its last entry."""

    def pad(a):
        a = np.asarray(a)
        if a.shape[0] == length:
            return a
        extra = np.repeat(a[-1:], length - a.shape[0], axis=0)
        return np.concatenate([a, extra], axis=0)

    return jax.tree_util.tree_map(pad, tree)


def split_leading(fn: Callable, mesh: Mesh | None, n_split: int, n_replicated: int) -> Callable:
    """``fn(*split, *replicated)`` with the leading axis of the first ``n_split`` arguments
    (pytrees) and of every output split over ``mesh``; ``fn`` itself without a mesh."""
    if mesh is None:
        return fn
    spec = PartitionSpec(tuple(mesh.axis_names))
    in_specs = (spec,) * n_split + (PartitionSpec(),) * n_replicated
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=spec, check_vma=False)
