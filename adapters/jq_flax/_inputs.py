"""Calibration batches against a Flax model's inputs, checked before ``jq.from_jax`` traces it.

A batch that does not fit the model (an image without its batch axis, channels first for a
channels-last ``Conv``, the wrong number of features for a ``Linear`` / ``Dense``) otherwise
fails inside the trace with a message about ``conv_general_dilated`` or ``dot_general``
shapes. :func:`check_layouts` names the batch, the input and what the layer expects, as
``jq_torch`` does for torch models (``jq_torch._inputs``): an eager call of the model on a
single sample watches the convolution and linear layers, stops at the first one that reads
no model input (or once every input is checked), so it costs a stem's worth of compute, and
leaves a model that fails for another reason to the trace to report.

Watching: Linen through ``flax.linen.intercept_methods``; NNX, which has no interceptor,
through ``nnx.Conv.__call__`` / ``nnx.Linear.__call__`` wrapped for the duration of the call
only (restored in ``finally``; the checking call runs in the caller's thread).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import linen, nnx

from jq._src.ptq.data import check_input_count, input_names

from ._convert import inference_view

_DIMS = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


class Layer(NamedTuple):
    """What a layer expects of its input: ``spatial`` dims (0 for a linear layer) and the
    number of input ``features`` (channels, last)."""

    name: str
    kind: str  # the layer's class name (``Conv``, ``Linear``, ``Dense``)
    spatial: int
    features: int


def mismatch(layer: Layer, shape: tuple[int, ...]) -> str | None:
    """Why an input of ``shape`` does not fit ``layer``, or ``None``."""
    if layer.spatial == 0:
        want = f"(batch, ..., {layer.features})"
        if len(shape) < 2:
            return f"expects {want}: add the batch axis (x[None])"
        return None if shape[-1] == layer.features else f"expects {want}, features last"
    n = layer.spatial
    want = f"(batch, {', '.join(_DIMS.get(n, ('...',)))}, {layer.features})"
    if len(shape) == n + 1:
        return f"expects {want}: add the batch axis (x[None])"
    if len(shape) < n + 1:
        return f"expects rank {n + 2}, {want}"
    if shape[-1] == layer.features:
        return None
    first = ""
    if len(shape) == n + 2 and shape[1] == layer.features:
        order = ", ".join(str(i) for i in (0, *range(2, n + 2), 1))
        first = f"; channels first? move them last (x.transpose({order}))"
    return f"expects {want}, channels last{first}"


class _Stop(Exception):
    """Ends the checking call (a mismatch found, or nothing more to check)."""


def _nnx_layer(module: Any, names: Mapping[int, str]) -> Layer | None:
    name = names.get(id(module), type(module).__name__)
    if isinstance(module, nnx.Conv):
        spatial = len(module.kernel_size)
        return Layer(name, type(module).__name__, spatial, module.in_features)
    if isinstance(module, nnx.Linear):
        return Layer(name, type(module).__name__, 0, module.in_features)
    return None


def _linen_layer(module: Any) -> Layer | None:
    kernel = module.variables.get("params", {}).get("kernel")
    if kernel is None:
        return None
    name = ".".join(module.scope.path) or type(module).__name__
    if isinstance(module, linen.Conv):
        groups = int(module.feature_group_count)
        return Layer(name, type(module).__name__, kernel.ndim - 2, kernel.shape[-2] * groups)
    if isinstance(module, linen.Dense):
        return Layer(name, type(module).__name__, 0, kernel.shape[0])
    return None


@contextlib.contextmanager
def _watch_nnx(hook: Callable[[Any, Any], None]) -> Iterator[None]:
    """``hook(module, x)`` before every ``nnx.Conv`` / ``nnx.Linear`` call, for this block."""
    saved = {cls: cls.__call__ for cls in (nnx.Conv, nnx.Linear)}

    def watched(orig: Callable) -> Callable:
        def call(self, x, *args, **kwargs):
            hook(self, x)
            return orig(self, x, *args, **kwargs)

        return call

    for cls, orig in saved.items():
        cls.__call__ = watched(orig)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for cls, orig in saved.items():
            cls.__call__ = orig  # type: ignore[method-assign]


def check_layouts(
    model: Any,
    arrays: Sequence[np.ndarray],
    fn: str,
    *,
    variables: Mapping | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> None:
    """Raise ``ValueError`` naming batch 0's input, its shape and the expected one when a
    convolution or linear layer of ``model`` (NNX, or Linen with ``variables``) reads a model
    input of the wrong rank or layout."""
    names = input_names(model.__call__, tuple(apply_kwargs or {}))
    sizes = {a.shape[0] for a in arrays if a.ndim}
    sample = [jnp.asarray(a[:1] if len(sizes) == 1 and a.ndim else a) for a in arrays]
    full = {id(x): (j, tuple(a.shape)) for j, (x, a) in enumerate(zip(sample, arrays, strict=True))}
    found: list[str] = []
    seen: set[int] = set()

    def hook(layer: Layer | None, x: Any) -> None:
        if layer is None:
            return
        if id(x) not in full:
            raise _Stop
        j, shape = full[id(x)]
        why = mismatch(layer, shape)
        if why is not None:
            label = f" ({names[j]})" if j < len(names) else ""
            found.append(
                f"{fn}: representative batch 0, input {j}{label} has shape {shape}; "
                f"{layer.name} ({layer.kind}) {why}"
            )
            raise _Stop
        seen.add(j)
        if len(seen) == len(arrays):
            raise _Stop

    try:
        if isinstance(model, nnx.Module):
            view = inference_view(model)
            paths = {id(m): ".".join(map(str, p)) for p, m in nnx.iter_graph(view) if p}
            with _watch_nnx(lambda m, x: hook(_nnx_layer(m, paths), x)):
                view(*sample)
        else:

            def intercept(next_fun, args, kwargs, context):
                if context.method_name == "__call__" and args:
                    hook(_linen_layer(context.module), args[0])
                return next_fun(*args, **kwargs)

            with linen.intercept_methods(intercept):
                model.apply(variables, *sample, **dict(apply_kwargs or {}))
    except _Stop:
        pass
    except Exception:
        return  # not an input mismatch: the trace reports it, with its context
    if found:
        raise ValueError(found[0])


def check_inputs(
    model: Any,
    arrays: Sequence[np.ndarray],
    fn: str,
    *,
    variables: Mapping | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> None:
    """The first calibration batch against ``model``'s inputs (count, then rank and layout),
    before any tracing.

    Raises:
      ValueError: naming the batch, the input, its shape and what the model expects.
    """
    given = tuple(apply_kwargs or {})
    owner = f"{type(model).__name__}.__call__"
    check_input_count(model.__call__, len(arrays), fn, owner, given)
    check_layouts(model, arrays, fn, variables=variables, apply_kwargs=apply_kwargs)
