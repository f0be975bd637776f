"""A fixed-capacity store of jq's compiled programs: least recently used out, executables freed.

Each XLA executable a process keeps costs it memory mappings (about 25 for a small search
program on CPU, hundreds for a whole-model program) and resident memory. A long-lived process
that calls jq on ever new shapes and options would otherwise keep every program it ever
compiled, until the kernel's mapping limit (``vm.max_map_count``, 65,530 by default) kills it
inside LLVM. So every program jq compiles lives in one :class:`ProgramStore` of the process,
keyed by the function and its call signature (static options, argument shapes, dtypes and
shardings, x64 mode, backend), and holds one ``jax.jit`` object of its own. When the store is
full, the least recently used program's ``clear_cache()`` releases its executable (JAX's own
jit caches keep nothing of it: measured in ``shared/notes/compiled-programs.md``).

The capacity is ``JQ_MAX_PROGRAMS`` (default :data:`DEFAULT_CAPACITY`), read when the store is
first used. Like the process's memory mappings it protects, the store is per process: it is the
one piece of global state jq keeps, and it holds only jq's own programs (never the user's).
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Hashable
from typing import Any

DEFAULT_CAPACITY = 96


class ProgramStore:
    """Least-recently-used ``key -> jitted function`` store of bounded size (thread-safe).

    Args:
      capacity: the most programs kept at once (>= 1).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jq._src.runtime.programs import ProgramStore
      >>> store = ProgramStore(capacity=1)
      >>> f = store.get("a", lambda: jax.jit(lambda x: x + 1))
      >>> int(f(jnp.int32(1)))
      2
      >>> g = store.get("b", lambda: jax.jit(lambda x: x * 3))  # evicts "a", frees its program
      >>> len(store), store.evictions
      (1, 1)
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"ProgramStore: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.evictions = 0
        self._entries: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The function stored under ``key`` (now the most recently used), made by ``make()``
        and stored when absent; a full store first frees its least recently used program."""
        with self._lock:
            fn = self._entries.get(key)
            if fn is not None:
                self._entries.move_to_end(key)
                return fn
            while len(self._entries) >= self.capacity:
                _, old = self._entries.popitem(last=False)
                old.clear_cache()
                self.evictions += 1
            fn = self._entries[key] = make()
            return fn

    def functions(self, owner: Hashable) -> list[Any]:
        """The stored functions whose key starts with ``owner`` (keys are ``(owner, ...)``)."""
        with self._lock:
            return [fn for key, fn in self._entries.items() if key[0] == owner]

    def clear(self) -> None:
        """Frees every stored program."""
        with self._lock:
            for fn in self._entries.values():
                fn.clear_cache()
            self._entries.clear()


_store: ProgramStore | None = None
_store_lock = threading.Lock()


def program_store() -> ProgramStore:
    """The process's store of jq programs (capacity ``JQ_MAX_PROGRAMS``, made on first use).

    Raises:
      ValueError: ``JQ_MAX_PROGRAMS`` is not an integer >= 1.
    """
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                _store = ProgramStore(_capacity_from_env())
    return _store


def _capacity_from_env() -> int:
    raw = os.environ.get("JQ_MAX_PROGRAMS", "").strip()
    if not raw:
        return DEFAULT_CAPACITY
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"JQ_MAX_PROGRAMS must be an integer >= 1, got {raw!r}")
    return value
