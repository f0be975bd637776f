"""JAX's persistent compilation cache, on by default for jq.

jq's searches are jitted programs whose compilation takes most of a first call. With JAX's
persistent compilation cache the compiled executables are written to disk and a second process
(or a second model with the same tensor shapes) loads them instead of compiling again.

Rules, applied once per process by :func:`ensure_compilation_cache`:

1. A cache the user configured for JAX (``JAX_COMPILATION_CACHE_DIR``, or
   ``jax.config.update("jax_compilation_cache_dir", ...)`` before jq's first call) is kept as it
   is, thresholds included. So is ``jax_enable_compilation_cache=False``.
2. ``JQ_COMPILATION_CACHE=0`` (or ``false``/``off``/``no``, any case) turns jq's default off.
3. Otherwise jq points JAX at ``JQ_COMPILATION_CACHE_DIR`` or, by default,
   ``$XDG_CACHE_HOME/jq/xla`` (``~/.cache/jq/xla`` when ``XDG_CACHE_HOME`` is unset or not an
   absolute path; the same rule on every OS), and lowers JAX's write thresholds
   (``jax_persistent_cache_min_compile_time_secs``, default 1 s, and
   ``jax_persistent_cache_min_entry_size_bytes``) to 0: jq's search programs often compile in
   under a second and would otherwise never be written. Thresholds the user set (through their
   ``JAX_PERSISTENT_CACHE_*`` environment variables or away from JAX's defaults) are kept.
4. A folder that cannot be created or written to costs one warning and no cache; jq runs on.

JAX reads the cache folder when it compiles, not when it imports, and (JAX 0.10.2) a compilation
that found no folder set leaves its file cache uninitialised, so a folder set after the user
already compiled something still takes effect for every later compilation. jq also calls JAX's
public ``jax.experimental.compilation_cache.compilation_cache.reset_cache()`` after setting the
folder, for JAX versions that latch "no cache" at the first compilation; it drops nothing in use,
since it is only reached when no folder is configured. Programs compiled before jq's first call stay
in memory and are not written to disk.

The JAX settings are global to the process, and so is this module's one flag.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
import threading
import warnings

import jax

_OFF_VALUES = frozenset({"0", "false", "off", "no"})

# JAX's write thresholds and their defaults in JAX 0.10.2 (jax/_src/config.py); jq lowers a
# threshold to 0 only while it still has JAX's default, so a user's own setting survives.
_THRESHOLDS = (
    ("jax_persistent_cache_min_compile_time_secs", 1.0),
    ("jax_persistent_cache_min_entry_size_bytes", 0),
)

# The process-global JAX config is decided once, so the decision is remembered once: the flag
# mirrors that global state (it is not state of jq's own) and makes every later call one
# comparison. A lock keeps two threads making their first call at once from deciding twice.
_decided = False
_decision: str | None = None
_lock = threading.Lock()


def ensure_compilation_cache() -> str | None:
    """Turns on JAX's persistent compilation cache for jq, unless configured otherwise.

    Idempotent and cheap after the first call (the decision is made once per process). See the
    module docstring for the rules.

    Returns:
      The folder JAX's persistent cache uses (the user's own, or jq's), or ``None`` when there is
      none: jq's default turned off (``JQ_COMPILATION_CACHE=0``), JAX's cache disabled by the
      user, or jq's folder unusable.

    Warns:
      UserWarning: once, naming the folder, when jq's folder cannot be created or written to;
        jq then runs without a persistent cache.

    Example:
      >>> from jq._src.runtime.cache import ensure_compilation_cache
      >>> ensure_compilation_cache()  # doctest: +SKIP
      '/home/me/.cache/jq/xla'
    """
    global _decided, _decision
    if not _decided:
        with _lock:
            if not _decided:
                _decision = _decide()
                _decided = True
    return _decision


def clear_compilation_cache() -> str:
    """Removes the compiled programs stored in jq's compilation-cache folder.

    jq's folder is ``JQ_COMPILATION_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/jq/xla`` or
    ``~/.cache/jq/xla``. Only that folder is touched, never a cache folder the user configured
    for JAX itself (``JAX_COMPILATION_CACHE_DIR`` / ``jax_compilation_cache_dir``), and inside it
    only what JAX's cache writes there (``*-cache`` and ``*-atime`` entries, its ``.lockfile``,
    XLA's ``xla_*`` caches), so a ``JQ_COMPILATION_CACHE_DIR`` pointed at a shared folder loses
    nothing else. The folder itself is kept. Programs already loaded in a running process are
    unaffected (``jax.clear_caches()`` drops those).

    Returns:
      The folder that was cleared, as a string (also when it did not exist).

    Raises:
      OSError: when an entry exists but cannot be removed.

    Example:
      >>> import jq
      >>> jq.clear_compilation_cache()  # doctest: +SKIP
      '/home/me/.cache/jq/xla'
    """
    folder = jq_cache_dir()
    if folder.is_dir():
        for entry in folder.iterdir():
            if not _is_jax_cache_entry(entry.name):
                continue
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except FileNotFoundError:  # another process evicted or cleared it meanwhile
                pass
    return str(folder)


def jq_cache_dir() -> pathlib.Path:
    """jq's cache folder: ``JQ_COMPILATION_CACHE_DIR``, else the user cache folder + ``jq/xla``."""
    chosen = os.environ.get("JQ_COMPILATION_CACHE_DIR")
    if chosen:
        # Absolute now, so a later os.chdir does not move the cache.
        return pathlib.Path(os.path.abspath(os.path.expanduser(chosen)))
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative XDG_CACHE_HOME.
    root = pathlib.Path(base) if os.path.isabs(base) else pathlib.Path.home() / ".cache"
    return root / "jq" / "xla"


def _decide() -> str | None:
    user_dir = _user_jax_cache_dir()
    if user_dir is not None:
        return user_dir
    if not jax.config.jax_enable_compilation_cache:  # type: ignore[attr-defined]
        return None  # the user switched JAX's cache off
    if _opted_out(os.environ.get("JQ_COMPILATION_CACHE")):
        return None
    folder = jq_cache_dir()
    try:
        _check_writable(folder)
    except OSError as err:
        warnings.warn(
            f"jq: cannot use {str(folder)!r} for JAX's persistent compilation cache ({err}); "
            "continuing without it. Set JQ_COMPILATION_CACHE_DIR to a writable folder, or "
            "JQ_COMPILATION_CACHE=0 to silence this warning.",
            stacklevel=3,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    for name, jax_default in _THRESHOLDS:
        if name.upper() not in os.environ and getattr(jax.config, name) == jax_default:
            jax.config.update(name, 0)
    _reset_jax_cache()
    return str(folder)


def write_thresholds() -> contextlib.AbstractContextManager:
    """A context in which compilations are written to the persistent cache whatever their
    compile time or size: JAX's two write thresholds at 0, for jq's programs only (a user's
    own cache folder keeps JAX's 1 s minimum for everything else). Thresholds the user set
    (environment or config away from JAX's default) are kept: then a null context.
    """
    try:
        from jax._src import config as jax_config  # the thresholds' thread-local contexts
    except ImportError:  # pragma: no cover - present in every supported JAX
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    for name, jax_default in _THRESHOLDS:
        state = getattr(jax_config, name.removeprefix("jax_"), None)
        if state is None or name.upper() in os.environ:
            continue
        if getattr(jax.config, name) == jax_default:
            stack.enter_context(state(0))
    return stack


def _user_jax_cache_dir() -> str | None:
    """The folder the user configured for JAX, if any (config first: it is what JAX uses)."""
    # jax.config's options are attributes set at run time, unknown to type checkers.
    configured = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
    return configured or os.environ.get("JAX_COMPILATION_CACHE_DIR") or None


def _opted_out(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _OFF_VALUES


def _check_writable(folder: pathlib.Path) -> None:
    """Creates ``folder`` (user-only: JAX trusts what it loads from it) and probes a write."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".jq-probe-")
    os.close(fd)
    os.unlink(probe)


def _reset_jax_cache() -> None:
    """Makes a folder set after JAX's first compilation take effect on any JAX version."""
    try:
        from jax.experimental.compilation_cache import compilation_cache
    except ImportError:  # pragma: no cover - the module exists in every supported JAX
        return
    compilation_cache.reset_cache()


def _is_jax_cache_entry(name: str) -> bool:
    # Names from jax/_src/lru_cache.py (`{key}-cache`, `{key}-atime`, `.lockfile`) and
    # jax/_src/compiler.py (`xla_gpu_per_fusion_autotune_cache_dir`, `xla_gpu_kernel_cache_file`).
    return name.endswith(("-cache", "-atime")) or name == ".lockfile" or name.startswith("xla_")
