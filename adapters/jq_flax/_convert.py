"""Flax models as JAX functions of their params, for ``jq.from_jax``.

NNX: the model is split into its arrays (``nnx.Param``, ``nnx.BatchStat`` and any other
variable but random state) and the rest; the function merges them back and calls the model in
inference mode (``nnx.view(deterministic=True, use_running_average=True)``). Linen: the
variables are regrouped by module (``params.Conv_0.kernel`` and ``batch_stats.BatchNorm_0.mean``
become ``Conv_0.kernel`` and ``BatchNorm_0.mean``) so node names read like the module tree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
from flax import linen, nnx, traverse_util

import jq


class Source(NamedTuple):
    """A Flax model as ``fn(params, *inputs)`` and ``params`` (what ``jq.from_jax`` takes)."""

    fn: Callable[..., Any]
    params: Any


_INFERENCE = {"deterministic": True, "use_running_average": True}


def _inference_flags(model: nnx.Module) -> dict[str, bool]:
    """The inference-mode flags some submodule of ``model`` has (``nnx.view`` rejects others)."""
    present = {
        k
        for _, m in nnx.iter_graph(model)
        if isinstance(m, nnx.Module)
        for k in _INFERENCE
        if hasattr(m, k)
    }
    return {k: v for k, v in _INFERENCE.items() if k in present}


def inference_view(model: nnx.Module) -> nnx.Module:
    """``model`` in inference mode (dropout off, batch norm on running statistics), sharing
    its variables: what ``from_nnx`` converts and quantizes."""
    return nnx.view(model, **_inference_flags(model))


def nnx_source(model: nnx.Module, fn_name: str) -> Source:
    """``model`` as a function of its arrays, in inference mode (the model is not changed)."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"{fn_name}: model must be a flax.nnx.Module, got {type(model).__name__}")
    view = inference_view(model)
    parts: Any = nnx.split(view, nnx.Not(nnx.RngState), ...)
    graphdef, state, rest = parts[0], parts[1], parts[2]
    pure = nnx.to_pure_dict(state)

    def fn(params, *xs):
        s = jax.tree.map(lambda v: v, state)  # a fresh State: replace_by_pure_dict mutates
        nnx.replace_by_pure_dict(s, params)
        return nnx.merge(graphdef, s, rest)(*xs)

    return Source(fn, pure)


def linen_source(
    module: linen.Module, variables: Mapping, apply_kwargs: Mapping[str, Any], fn_name: str
) -> Source:
    """``module.apply(variables, *inputs, **apply_kwargs)`` as a function of the variables
    regrouped by module path."""
    if not isinstance(module, linen.Module):
        raise TypeError(
            f"{fn_name}: module must be a flax.linen.Module, got {type(module).__name__}"
        )
    if not isinstance(variables, Mapping) or not variables:
        raise TypeError(
            f"{fn_name}: variables must be the module's variables dict ({{'params': ...}}), got "
            f"{type(variables).__name__}"
        )
    flat = traverse_util.flatten_dict(dict(variables))
    rest_keys = [k[1:] for k in flat]
    clash = {k for k in rest_keys if rest_keys.count(k) > 1}
    key_of = {k: (k[1:] if k[1:] not in clash and len(k) > 1 else k) for k in flat}
    grouped = traverse_util.unflatten_dict({key_of[k]: v for k, v in flat.items()})

    def fn(params, *xs):
        by_key = traverse_util.flatten_dict(params)
        v = traverse_util.unflatten_dict({k: by_key[key_of[k]] for k in flat})
        return module.apply(v, *xs, **apply_kwargs)

    return Source(fn, grouped)


def from_nnx(model: nnx.Module, *example_inputs: Any) -> tuple[jq.Graph, dict]:
    """Convert a Flax NNX module (in inference mode) into a jq graph and params.

    Args:
      model: an ``nnx.Module`` (not changed; dropout off, batch norm on running statistics).
      *example_inputs: one array per input of ``model.__call__`` (shapes and dtypes).

    Returns:
      ``(graph, params)`` as :func:`jq.from_jax` returns them; node names are the module
      paths (``conv``, ``blocks.0.attn.query``).

    Raises:
      TypeError: ``model`` is not an NNX module. Others as :func:`jq.from_jax`.

    Example:
      >>> import numpy as np, jq
      >>> from flax import nnx
      >>> graph, params = from_nnx(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), np.zeros((1, 3), np.float32))
      >>> [(n.name, n.op) for n in graph.nodes], params["linear"]["weight"].shape
      ([('linear', 'linear')], (2, 3))
    """
    src = nnx_source(model, "from_nnx")
    return jq.from_jax(src.fn, src.params, *example_inputs, name="from_nnx")


def from_linen(
    module: linen.Module, variables: Mapping, *example_inputs: Any, **apply_kwargs: Any
) -> tuple[jq.Graph, dict]:
    """Convert a Flax Linen module with its variables into a jq graph and params.

    Args:
      module: a ``linen.Module``.
      variables: its variables (``{"params": ..., "batch_stats": ...}``).
      *example_inputs: one array per input of ``module.apply`` (shapes and dtypes).
      **apply_kwargs: keyword arguments for ``module.apply`` (``train=False``, ...).

    Returns:
      ``(graph, params)`` as :func:`jq.from_jax` returns them; node names are the module
      paths (``Conv_0``, ``Block_1.Dense_0``).

    Raises:
      TypeError: not a Linen module, or no variables. Others as :func:`jq.from_jax`.
    """
    src = linen_source(module, variables, apply_kwargs, "from_linen")
    return jq.from_jax(src.fn, src.params, *example_inputs, name="from_linen")
