"""Writing an export file: the folder rule and atomic writes every jq writer shares
(``jq._src.runtime.paths``), with the exporter's argument name in the messages."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..runtime import paths


def check_writable(path: str | os.PathLike, fn: str) -> str:
    """``path`` as a string, after checking its folder exists and is writable (see
    :func:`jq._src.runtime.paths.check_writable`; messages name ``save_model_path``)."""
    return paths.check_writable(path, fn, "save_model_path")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """:func:`jq._src.runtime.paths.atomic_path` with temporary names ``.jq-export-*``."""
    with paths.atomic_path(path, prefix=".jq-export-") as tmp:
        yield tmp
