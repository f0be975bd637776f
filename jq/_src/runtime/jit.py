"""``jax.jit`` for jq's own programs: bounded in number, cheaper to compile on CPU, all persisted.

Three things differ from a plain ``jax.jit``:

1. **Bounded.** Every program lives in the process's :func:`~.programs.program_store`, one
   ``jax.jit`` object per call signature (static options, argument shapes, dtypes, shardings,
   x64 mode, backend). The store keeps ``JQ_MAX_PROGRAMS`` programs and frees the least
   recently used one's executable when full, so no sequence of calls grows the process's memory
   mappings without bound (each executable holds some; the kernel allows 65,530).
2. **Cheaper LLVM on CPU.** ``xla_llvm_disable_expensive_passes`` skips LLVM's costliest passes:
   on resnet18's 21 kernels (2-core VM, empty cache) a first ``weights_qparams_batch`` call took
   6.8 s instead of 9.3 s (symmetric MSE), and the compiled searches ran no slower. Other
   backends compile as ``jax.jit`` does by default.
3. **Every program persisted.** A program's compilation runs with JAX's persistent-cache write
   thresholds at 0 unless the user set their own (:func:`~.cache.write_thresholds`), so jq's
   programs, most of which compile in under JAX's default 1 s minimum, reach whichever cache
   folder is in use, the user's own included.

The backend is read at each call, so nothing is decided at import time
(``jax.distributed.initialize`` must come first).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from .cache import write_thresholds
from .programs import program_store

CPU_COMPILER_OPTIONS = {"xla_llvm_disable_expensive_passes": True}


class _Jit:
    """A jitted function whose programs (one per call signature) live in the program store."""

    def __init__(self, fun: Callable, kwargs: dict[str, Any]):
        self._fun = fun
        self._kwargs = kwargs
        self._signature = inspect.signature(fun)
        static = kwargs.get("static_argnames", ())
        self._static = frozenset((static,) if isinstance(static, str) else static)
        # Traced inside another program, which holds (and bounds) the compiled code.
        self._nested = jax.jit(fun, **kwargs)
        functools.update_wrapper(self, fun)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return self._nested(*args, **kwargs)
        key = (self, *self._call_signature(args, kwargs))
        made: list[bool] = []

        def make() -> Any:
            made.append(True)
            return self._make(key[-1])

        fn = program_store().get(key, make)
        with write_thresholds() if made else contextlib.nullcontext():
            return fn(*args, **kwargs)

    def _make(self, backend: str) -> Any:
        # A fresh function object per program: JAX's trace caches are keyed by the function,
        # so freeing one program's entry drops its traces and no other's.
        @functools.wraps(self._fun)
        def program(*args: Any, **kwargs: Any) -> Any:
            return self._fun(*args, **kwargs)

        options: dict[str, Any] = dict(self._kwargs)
        if backend == "cpu":
            options["compiler_options"] = CPU_COMPILER_OPTIONS
        return jax.jit(program, **options)

    def _call_signature(self, args: tuple, kwargs: dict) -> tuple:
        """What decides the compiled program: static values, the dynamic arguments' structure
        and each leaf's shape, dtype and sharding, x64 mode and the backend (last)."""
        static: list[tuple[str, Any]] = []
        dynamic: list[tuple[str, Any]] = []
        for name, value in self._signature.bind(*args, **kwargs).arguments.items():
            kind = self._signature.parameters[name].kind
            items = value.items() if kind is inspect.Parameter.VAR_KEYWORD else [(name, value)]
            for n, v in items:
                (static if n in self._static else dynamic).append((n, v))
        leaves, tree = jax.tree_util.tree_flatten([v for _, v in dynamic])
        names = tuple(n for n, _ in dynamic)
        x64 = bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]
        sig = tuple(_leaf_signature(leaf) for leaf in leaves)
        return tuple(static), names, tree, sig, x64, jax.default_backend()

    def _cache_size(self) -> int:
        """The number of programs of this function now in the store."""
        return sum(fn._cache_size() for fn in program_store().functions(self))

    def __getattr__(self, name: str) -> Any:  # lower, trace, eval_shape: uncompiled uses
        return getattr(self._nested, name)


def _leaf_signature(leaf: Any) -> Any:
    if isinstance(leaf, jax.Array):
        return leaf.shape, leaf.dtype, bool(getattr(leaf, "weak_type", False)), leaf.sharding
    if isinstance(leaf, (np.ndarray, np.generic)):
        return leaf.shape, leaf.dtype
    return type(leaf)  # a Python scalar: traced as a weakly typed scalar of its kind


def jit(fun: Callable | None = None, /, **kwargs: Any) -> Any:
    """``jax.jit(fun, **kwargs)`` for jq's programs (see the module docstring); usable as
    ``@jit`` or ``@functools.partial(jit, static_argnames=...)``.

      >>> import jax.numpy as jnp
      >>> from jq._src.runtime.jit import jit
      >>> f = jit(lambda x, n: x * n, static_argnames="n")
      >>> f(jnp.arange(3.0), n=2).tolist()
      [0.0, 2.0, 4.0]
    """
    if fun is None:
        return functools.partial(jit, **kwargs)
    return _Jit(fun, kwargs)
