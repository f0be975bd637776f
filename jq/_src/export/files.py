"""Writing an export file whole or not at all: a temporary file in the destination folder,
renamed over the destination once complete (``os.replace`` is atomic on one file system)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator


def check_writable(path: str | os.PathLike, fn: str) -> str:
    """``path`` as a string, after checking its folder exists and is writable.

    Raises:
      TypeError: ``path`` is not a path.
      ValueError: empty, a folder, or in a missing / unwritable folder.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}: save_model_path must be a path, got {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{fn}: save_model_path is empty")
    if os.path.isdir(path):
        raise ValueError(f"{fn}: save_model_path {path!r} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{fn}: cannot write {path!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{fn}: cannot write {path!r}: folder {folder!r} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside ``path``; on success it replaces ``path``, on any error it is
    removed (so no partial file is left)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".jq-export-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
