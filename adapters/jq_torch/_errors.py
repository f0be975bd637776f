"""Errors raised by jq_torch (the "cannot convert" one is jq's, shared with ``jq.from_jax``)."""

from __future__ import annotations

from jq._src.errors import Unsupported as Unsupported
from jq._src.errors import UnsupportedError

UnsupportedOpError = UnsupportedError
"""Some ops of the model have no converter; ``.ops`` lists all of them (:class:`Unsupported`)."""


class ExportError(RuntimeError):
    """``torch.export`` could not capture the model; the message carries torch's reason and the
    original exception is chained (``__cause__``)."""


class DynamicControlFlowError(ExportError):
    """The model branches (or sizes a tensor) on tensor values, which a static graph cannot
    represent."""
