"""Calibration batches against the model's inputs, checked before ``torch.export`` runs.

A batch that does not fit the model (``(x, label)`` for ``forward(self, x)``, an image without
its batch axis, channels last for a ``Conv2d``) otherwise fails deep inside ``torch.export``
with a message about positional arguments or conv channels. :func:`check_inputs` names the
batch, the input and what was expected instead:

- the count, from ``forward``'s signature (no forward runs);
- the rank and layout of each input read directly by a convolution or linear layer, from an
  eager forward of a single sample with pre-hooks on those modules. The forward stops at the
  first such layer that reads no model input (or once every input is checked), so it costs a
  stem's worth of compute and leaves the model as it was (a forward that fills caches, as
  timm's LeViT does, never gets that far); a model that fails for another reason is left to
  ``torch.export`` to report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from jq._src.ptq.data import check_input_count, input_names

_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_CONV_DIMS = {
    torch.nn.Conv1d: ("L",),
    torch.nn.Conv2d: ("H", "W"),
    torch.nn.Conv3d: ("D", "H", "W"),
}


def _expected(module: torch.nn.Module) -> tuple[int | None, tuple[str, ...], str]:
    """``(rank, shape, layout hint)`` a module expects of its input (rank ``None``: any)."""
    if isinstance(module, _CONVS):
        dims = _CONV_DIMS[type(module)]
        shape = ("batch", str(module.in_channels), *dims)
        return len(shape), shape, "channels first"
    assert isinstance(module, torch.nn.Linear)
    return None, ("batch", "...", str(module.in_features)), "features last"


def _mismatch(module: torch.nn.Module, shape: tuple[int, ...]) -> str | None:
    """Why ``shape`` does not fit ``module``'s input, or ``None``."""
    rank, want, layout = _expected(module)
    if rank is not None:
        if len(shape) == rank - 1:
            return f"expects ({', '.join(want)}): add the batch axis (x[None] or x.unsqueeze(0))"
        if len(shape) != rank:
            return f"expects rank {rank}, ({', '.join(want)})"
        if shape[1] != module.in_channels:
            last = (
                f"; channels last? move them first (x.permute(0, {rank - 1}, "
                f"{', '.join(str(i) for i in range(1, rank - 1))}))"
                if shape[-1] == module.in_channels
                else ""
            )
            return f"expects ({', '.join(want)}), {layout}{last}"
        return None
    if len(shape) < 2:
        return f"expects ({', '.join(want)}): add the batch axis"
    if shape[-1] != module.in_features:
        return f"expects ({', '.join(want)}), {layout}"
    return None


class _Stop(Exception):
    """Ends the checking forward (a mismatch found, or nothing more to check)."""


def check_layouts(model: torch.nn.Module, arrays: Sequence[np.ndarray], fn: str) -> None:
    """Raises ``ValueError`` naming batch 0's input, its shape and the expected one when a
    convolution or linear layer reads a model input of the wrong rank or layout."""
    names = input_names(model.forward)
    sizes = {a.shape[0] for a in arrays if a.ndim}
    sample = [
        torch.from_numpy(np.ascontiguousarray(a[:1] if len(sizes) == 1 and a.ndim else a))
        for a in arrays
    ]
    full = {id(t): (j, tuple(a.shape)) for j, (t, a) in enumerate(zip(sample, arrays, strict=True))}
    found: list[str] = []

    seen: set[int] = set()

    def pre_hook(module: torch.nn.Module, args: tuple) -> None:
        x = args[0] if args else None
        if id(x) not in full:
            raise _Stop
        j, shape = full[id(x)]
        why = _mismatch(module, shape)
        if why is not None:
            label = f" ({names[j]})" if j < len(names) else ""
            found.append(
                f"{fn}: representative batch 0, input {j}{label} has shape {shape}; "
                f"{module_names[module]} ({type(module).__name__}) {why}"
            )
            raise _Stop
        seen.add(j)
        if len(seen) == len(arrays):
            raise _Stop

    module_names: dict[torch.nn.Module, str] = {
        m: n for n, m in model.named_modules() if isinstance(m, (*_CONVS, torch.nn.Linear))
    }
    if not module_names:  # nothing to check against: no forward runs
        return
    handles = [m.register_forward_pre_hook(pre_hook) for m in module_names]
    try:
        with torch.no_grad():
            model(*sample)
    except _Stop:
        pass
    except Exception:
        return  # not an input mismatch: torch.export reports it, with its context
    finally:
        for h in handles:
            h.remove()
    if found:
        raise ValueError(found[0])


def check_inputs(model: torch.nn.Module, arrays: Sequence[np.ndarray], fn: str) -> None:
    """The first calibration batch against ``model``'s inputs (count, then rank and layout).

    Raises:
      ValueError: naming the batch, the input, its shape and what the model expects.
    """
    check_input_count(model.forward, len(arrays), fn, f"{type(model).__name__}.forward")
    check_layouts(model, arrays, fn)
