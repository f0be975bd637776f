"""Node names for converted JAX programs: params' pytree paths, the jaxpr's name stack, the
user's source lines (unique names come from :class:`jq._src.names.Names`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import jax

from ..names import Names as Names

_siu: Any
try:  # the user's frame of an equation: private in JAX, so imported defensively
    from jax._src import source_info_util as _siu
except ImportError:  # pragma: no cover
    _siu = None


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def key_name(key: Any) -> str:
    """One pytree path entry as text: ``DictKey('conv')`` -> ``conv``, ``SequenceKey(1)`` ->
    ``1``, ``GetAttrKey('kernel')`` -> ``kernel``."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_name(path: Iterable[Any]) -> str:
    """A pytree key path as a dotted name (``encoder.layers.1.attn.kernel``); ``"param"`` for
    the root."""
    return ".".join(key_name(k) for k in path) or "param"


def param_paths(params: Any) -> list[str]:
    """The dotted path of every leaf of ``params``, in ``jax.tree`` flattening order."""
    return [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def module_of(paths: Iterable[str]) -> str:
    """The owner of params at ``paths``: their longest common dotted prefix, the leaf's parent
    when there is one path (``conv.kernel`` -> ``conv``; ``""`` for a root leaf)."""
    split = [p.split(".") for p in paths]
    if not split:
        return ""
    if len(split) == 1:
        return ".".join(split[0][:-1])
    common = []
    for level in zip(*split, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common)


def scope(source_info: Any) -> str:
    """The equation's name stack as a dotted prefix (``""`` when empty, as under NNX)."""
    stack = str(getattr(source_info, "name_stack", "") or "")
    # Module names only: JAX's own scopes (jnp.einsum's "bld,dhk->blhk", "jit(f)") are not.
    parts = [p for p in stack.replace("/", ".").split(".") if _IDENT.fullmatch(p)]
    return ".".join(parts)


def source_line(source_info: Any) -> str:
    """``file:line (function)`` of the user code that produced an equation, or ``""``."""
    if _siu is None or source_info is None:
        return ""
    try:
        frame = _siu.user_frame(source_info.traceback)
    except Exception:  # noqa: BLE001  (best effort: a location is a courtesy)
        return ""
    if frame is None:
        return ""
    return f"{frame.file_name}:{frame.start_line} ({frame.function_name})"
