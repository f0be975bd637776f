"""The one place jq_torch calls ``torch.export``: a static program (every size fixed) or one
with a symbolic batch axis, torch's warnings about forward-assigned attributes silenced, and
the static capture's failures as jq's :class:`ExportError` /
:class:`DynamicControlFlowError`."""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from ._errors import DynamicControlFlowError, ExportError


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence torch.export's warning about plain tensor attributes a forward assigns (caches
    such as timm LeViT's ``attention_bias_cache``): the traced graph recomputes them from the
    parameters, so the warning is no concern of the user's (and ``-W error`` must not fail)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*were assigned during export")
        yield


def _batch_specs(model: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> Any:
    """``dynamic_shapes`` with one symbolic size, ``batch``, on axis 0 of every input (by
    parameter name for a ``forward(self, *xs)``)."""
    batch = torch.export.Dim("batch")
    specs: Any = tuple({0: batch} for _ in args)
    try:
        bound = inspect.signature(model.forward).bind(*args).arguments
    except (TypeError, ValueError):
        bound = {}
    if any(isinstance(v, tuple) for v in bound.values()):  # forward(self, *xs): by name
        specs = {
            k: tuple({0: batch} for _ in v) if isinstance(v, tuple) else {0: batch}
            for k, v in bound.items()
        }
    return specs


def export(
    model: torch.nn.Module, args: tuple[torch.Tensor, ...], *, dynamic: bool = False
) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` on ``args``: static, or with a symbolic batch axis
    (``dynamic``); raises what export raises."""
    specs = _batch_specs(model, args) if dynamic else None
    with quiet_export():
        return torch.export.export(model, args, dynamic_shapes=specs)


def export_dynamic(
    model: torch.nn.Module, args: tuple[torch.Tensor, ...]
) -> torch.export.ExportedProgram:
    """:func:`export` with a symbolic batch axis (raises what export raises)."""
    return export(model, args, dynamic=True)


def export_static(model: torch.nn.Module, args: tuple) -> torch.export.ExportedProgram:
    """A static :func:`export`, torch's errors wrapped in ours.

    Raises:
      DynamicControlFlowError: the model branches or sizes a tensor on tensor values.
      ExportError: torch.export failed for another reason (its message included).
    """
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    name = type(model).__name__
    try:
        return export(model, args)
    except Exception as e:
        reason = "\n".join(str(e).strip().splitlines()[:12])
        if isinstance(e, GuardOnDataDependentSymNode) or "data-dependent" in str(e):
            raise DynamicControlFlowError(
                f"from_torch: {name} has data-dependent control flow or shapes (a Python branch "
                "or size that depends on tensor values), which a static jq graph cannot "
                "represent. Make the branch static, or compute both sides and select with "
                f"torch.where. torch.export says:\n{reason}"
            ) from e
        hint = ""
        if "Cache" in str(e) and "not a known type" in str(e):
            hint = (
                " The model returns a key/value cache (a Hugging Face model): build it with "
                "use_cache=False in its config, or wrap it to return the logits."
            )
        raise ExportError(
            f"from_torch: torch.export could not capture {name} ({type(e).__name__}).{hint} "
            f"torch says:\n{reason}"
        ) from e
