"""Torch tensors as NumPy arrays: the one place jq_torch hands tensors to jq's torch-free core
(calibration batches, the exporter's example batch and module params)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch


def to_numpy(x: Any) -> Any:
    """A tensor as a NumPy array (detached, on the CPU); anything else as it is."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def numpy_batch(batch: Any) -> Any:
    """One batch (a tensor, or a list or tuple of them) with every tensor as a NumPy array."""
    if isinstance(batch, (list, tuple)):
        return [to_numpy(x) for x in batch]
    return to_numpy(batch)


def numpy_batches(representative_data_gen: Callable[[], Any]) -> Callable[[], Iterator]:
    """``representative_data_gen`` with every torch tensor of a batch as a NumPy array."""

    def gen() -> Iterator:
        for batch in representative_data_gen():
            yield numpy_batch(batch)

    return gen


def numpy_params(params: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """``{name: tensor}`` as ``{name: array}``."""
    return {k: to_numpy(t) for k, t in params.items()}
