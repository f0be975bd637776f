"""A dynamic batch axis for converted graphs: ``torch.export`` with a ``Dim`` on axis 0.

``from_torch`` first exports with one shared symbolic size on axis 0 of every input. Where that
succeeds, view-like ops whose target size involves the batch become ``reshape`` with ``-1`` and
``expand`` reads the batch size from the tensor torch took it from, so one graph serves every
batch size. Where torch cannot keep the batch symbolic (the model pins it, e.g.
``x.view(4, -1)``), :func:`pin_reason` finds the source line that added the guard, and the
caller converts a static export and names it (``Graph.pinned_by``). Both exports are
:mod:`jq_torch._export`'s, the one place jq_torch calls ``torch.export``.

Why an example of batch 2 when the user gives batch 1: torch specializes sizes 0 and 1 (a
size-1 axis broadcasts), so a symbolic batch needs an example of at least 2; the model is in
eval mode, so repeating the sample changes no value.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from typing import Any, NamedTuple

import torch

from ._export import export_dynamic


class SymSize(NamedTuple):
    """A symbolic size in a converted graph: axis ``axis`` of jq value ``value`` (``value`` is
    ``None`` for sizes computed from sizes, e.g. ``batch * heads``)."""

    value: str | None
    axis: int


def dynamic_example(args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
    """The example to export with a symbolic batch axis, or ``None`` when the inputs do not
    share a leading axis (a scalar input, or inputs of different sizes on axis 0)."""
    if not args or any(a.ndim == 0 for a in args):
        return None
    sizes = {int(a.shape[0]) for a in args}
    if len(sizes) != 1:
        return None
    if sizes == {1}:
        return tuple(a.repeat(2, *[1] * (a.ndim - 1)) for a in args)
    return args


class _GuardFrames(logging.Handler):
    """Records, for each guard torch's shape environment adds, the innermost Python frame
    outside torch: non-strict export runs the model's own ``forward``, so that is the user's
    source line that asked for the guard."""

    def __init__(self) -> None:
        super().__init__()
        self.guards: list[tuple[str, traceback.FrameSummary]] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "[guard added]" not in msg:
            return
        user = [f for f in traceback.extract_stack() if not _in_library(f.filename)]
        if user:
            self.guards.append((msg.split(" [guard added]")[0].removeprefix("eval "), user[-1]))


_LIBRARY_DIRS = (os.path.dirname(torch.__file__), os.path.dirname(logging.__file__))


def _in_library(filename: str) -> bool:
    return filename.startswith(_LIBRARY_DIRS) or filename == __file__


def pin_reason(model: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> str:
    """The source line that pins the batch size: ``export_dynamic`` again, with the shape
    environment's guard log captured (``"torch fixes the batch size"`` if it names none)."""
    log = logging.getLogger("torch.fx.experimental.symbolic_shapes")
    saved = (log.level, log.handlers[:], log.propagate)
    capture = _GuardFrames()
    # Scoped: the log is only read here, and put back as it was (nothing printed meanwhile).
    log.handlers, log.propagate = [capture], False
    log.setLevel(logging.INFO)
    try:
        export_dynamic(model, args)
    except Exception:
        pass  # the failure is known; the guards are what we are after
    finally:
        log.setLevel(saved[0])
        log.handlers, log.propagate = saved[1], saved[2]
    pins = [(e, f) for e, f in capture.guards if re.fullmatch(r"Eq\(s\d+, \d+\)", e)]
    if not pins:
        return "torch fixes the batch size"
    expr, frame = pins[0]
    guard = re.sub(r"\bs\d+\b", "batch", expr)
    return (
        f"`{(frame.line or '').strip()}` (in {frame.name}) makes the batch size a constant: {guard}"
    )


def symbolic_axes(val: Any) -> tuple[int, ...]:
    """The axes of a fake tensor (``node.meta["val"]``) whose size is symbolic."""
    shape = getattr(val, "shape", ())
    return tuple(i for i, d in enumerate(shape) if not isinstance(d, int))


def hint(d: Any) -> int:
    """A size as an int: static sizes as they are, symbolic ones as the example's value."""
    if isinstance(d, int):
        return d
    return int(d.node.hint)
