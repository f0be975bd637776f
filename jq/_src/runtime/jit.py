"""``jax.jit`` for jq's own programs: on CPU, compiled without LLVM's most expensive passes.

jq's first calls are compile-bound, and on CPU most of a compilation is LLVM optimising XLA's
loop kernels. ``xla_llvm_disable_expensive_passes`` skips LLVM's costliest passes. On
resnet18's 21 kernels (2-core VM, empty cache), a first ``weights_qparams_batch`` call took
6.8 s instead of 9.3 s (symmetric MSE) and 10.1 s instead of 11.5 s (uniform MSE), and the
compiled searches ran no slower (second call 1.7 s against 2.5 s, 3.9 s against 4.8 s).
Results are unchanged (the MCT parity suite passes on them).
Other backends compile as ``jax.jit`` does by default; the backend is read at each call, so
nothing is decided at import time (``jax.distributed.initialize`` must come first).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

CPU_COMPILER_OPTIONS = {"xla_llvm_disable_expensive_passes": True}


class _Jit:
    """Two jitted versions of one function; each call takes the one for the default backend."""

    def __init__(self, fun: Callable, kwargs: dict[str, Any]):
        self._cpu = jax.jit(fun, compiler_options=CPU_COMPILER_OPTIONS, **kwargs)
        self._other = jax.jit(fun, **kwargs)
        functools.update_wrapper(self, fun)

    def _pick(self) -> Any:
        return self._cpu if jax.default_backend() == "cpu" else self._other

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Called inside another jitted function, the outer program's options are the ones that
        # count (and JAX refuses compiler options on a nested jit).
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        nested = any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)
        return (self._other if nested else self._pick())(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # lower, trace, _cache_size, ...
        return getattr(self._pick(), name)


def jit(fun: Callable | None = None, /, **kwargs: Any) -> Any:
    """``jax.jit(fun, **kwargs)`` with :data:`CPU_COMPILER_OPTIONS` on the CPU backend; usable
    as ``@jit`` or ``@functools.partial(jit, static_argnames=...)``.

      >>> import jax.numpy as jnp
      >>> from jq._src.runtime.jit import jit
      >>> f = jit(lambda x, n: x * n, static_argnames="n")
      >>> f(jnp.arange(3.0), n=2).tolist()
      [0.0, 2.0, 4.0]
    """
    if fun is None:
        return functools.partial(jit, **kwargs)
    return _Jit(fun, kwargs)
