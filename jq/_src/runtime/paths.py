"""The folder rule every jq writer follows (exporter, ``QuantizationInfo.save``, ``jq.report``).

A destination whose folder is missing is an error naming that folder (jq creates no folders:
a typo in a path should not silently grow a new tree), and a file is written whole or not at
all: into a temporary file in the destination folder, renamed over the destination once
complete (``os.replace`` is atomic on one file system), removed on any error.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator


def check_writable(path: str | os.PathLike, fn: str, arg: str = "path") -> str:
    """``path`` as a string, after checking its folder exists and is writable.

    Args:
      path: the file to write.
      fn: the entry point's name; arg: its argument's name (both for the messages).

    Raises:
      TypeError: ``path`` is not a path.
      ValueError: empty, a folder, or in a missing / unwritable folder (the message names it).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}: {arg} must be a path, got {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{fn}: {arg} is empty")
    if os.path.isdir(path):
        raise ValueError(f"{fn}: {arg} {path!r} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{fn}: cannot write {path!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{fn}: cannot write {path!r}: folder {folder!r} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: str, prefix: str = ".jq-") -> Iterator[str]:
    """A temporary path beside ``path`` (a hidden name starting with ``prefix``); on success
    it replaces ``path``, on any error it is removed (so no partial file is left)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str, text: str) -> None:
    """``text`` written to ``path`` (UTF-8) whole or not at all (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
