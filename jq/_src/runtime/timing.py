"""Wall and compile seconds per pipeline stage (``QuantizationInfo.timings``).

JAX reports how long each compilation step takes (tracing, lowering to MLIR, XLA compilation or
loading from the persistent cache) through ``jax.monitoring`` duration events. One listener,
registered on first use, adds them up per thread, so a stage can tell its own compile time from
that of a search running meanwhile in another thread. The listener and its per-thread totals are
process-global by nature (JAX offers no way to scope a listener); they hold no jq state.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from jax import monitoring

_PREFIX = "/jax/core/compile/"
_totals: defaultdict[int, float] = defaultdict(float)
_lock = threading.Lock()
_registered = False


def _listen(event: str, duration_secs: float, **kwargs: str | int) -> None:
    del kwargs
    if event.startswith(_PREFIX):
        _totals[threading.get_ident()] += duration_secs


def compile_seconds() -> float:
    """Seconds this thread has spent compiling JAX programs so far."""
    global _registered
    if not _registered:
        with _lock:
            if not _registered:
                monitoring.register_event_duration_secs_listener(_listen)
                _registered = True
    return _totals[threading.get_ident()]


class StageClock:
    """Times the stages of one pipeline call into a ``{name: s, name + ".compile": s}`` dict.

    ``start()`` opens a stage, ``stop(name)`` records its wall seconds and the compile seconds
    of the calling thread since ``start``; ``lap(name)`` records without closing the stage;
    ``add_compile(name, s)`` adds compile time measured in another thread.
    """

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._other: dict[str, float] = {}  # compile seconds measured in other threads
        self._t0 = time.perf_counter()
        self._c0 = compile_seconds()

    def start(self) -> None:
        self._t0, self._c0 = time.perf_counter(), compile_seconds()

    def lap(self, name: str) -> None:
        self.timings[name] = time.perf_counter() - self._t0
        own = compile_seconds() - self._c0
        self.timings[name + ".compile"] = own + self._other.get(name, 0.0)

    def stop(self, name: str) -> None:
        self.lap(name)
        self.start()

    def add_compile(self, name: str, seconds: float) -> None:
        self._other[name] = self._other.get(name, 0.0) + seconds
