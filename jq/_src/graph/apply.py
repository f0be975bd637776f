"""Run a jq graph: ``apply(graph, params, *inputs, capture=None)``, pure and jit-able."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from .graph import Graph
from .ops import get_op

_NO_PARAMS: Mapping[str, jax.Array] = {}


def _capture_names(graph: Graph, capture: Iterable[str] | str | None) -> tuple[str, ...]:
    if capture is None:
        return ()
    names = (capture,) if isinstance(capture, str) else tuple(capture)
    unknown = [n for n in names if n not in graph._index]
    if unknown:
        raise ValueError(f"apply: capture names {unknown} are not inputs or nodes of the graph")
    return names


def _free_after(graph: Graph, keep: set[str]) -> dict[int, list[str]]:
    """``{i: names}``: the values not in ``keep`` whose last reader is node ``i``, so that
    :func:`apply` drops each value after its last reader (eager runs do not hold every
    activation)."""
    last_use: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for src in node.inputs:
            last_use[src] = i
    free: dict[int, list[str]] = {}
    for name, i in last_use.items():
        if name not in keep:
            free.setdefault(i, []).append(name)
    return free


def apply(
    graph: Graph,
    params: Mapping[str, Mapping[str, jax.Array]],
    *inputs: jax.typing.ArrayLike,
    capture: Iterable[str] | str | None = None,
) -> Any:
    """Evaluate ``graph`` on ``inputs`` with ``params``. Pure: ``jax.jit`` it with the graph
    (and ``capture``) static: ``jax.jit(apply, static_argnums=0, static_argnames="capture")``.

    Args:
      graph: the :class:`Graph`.
      params: ``{node_name: {param_name: array}}``; nodes without params may be absent.
      *inputs: one array per ``graph.inputs``, in order (layouts as at conversion, e.g. NCHW).
      capture: names of values (nodes or inputs) to return as well, e.g. activations to
        calibrate on. A tuple when jitted (static arguments must be hashable).

    Returns:
      The output (a tuple if the graph has several); with ``capture``, ``(outputs,
      {name: value})``.

    Raises:
      TypeError: wrong number of inputs.
      ValueError: unknown capture name, unknown op, or a node whose params are missing.

    Example:
      >>> import jax
      >>> import numpy as np
      >>> import jq
      >>> graph = jq.Graph(
      ...     ("x",), (jq.Node("fc", "linear", ("x",)), jq.Node("act", "relu", ("fc",))), ("act",)
      ... )
      >>> params = {"fc": {"weight": np.array([[1.0, -1.0], [-1.0, 0.5]], np.float32)}}
      >>> x = np.array([[2.0, 1.0]], np.float32)
      >>> f = jax.jit(jq.apply, static_argnums=0)
      >>> f(graph, params, x)
      Array([[1., 0.]], dtype=float32)
      >>> y, acts = jq.apply(graph, params, x, capture=("fc",))
      >>> acts["fc"]
      Array([[ 1. , -1.5]], dtype=float32)
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"apply: graph must be a jq Graph, got {type(graph).__name__}")
    if len(inputs) != len(graph.inputs):
        raise TypeError(
            f"apply: the graph takes {len(graph.inputs)} inputs {graph.inputs}, got {len(inputs)}"
        )
    if graph.pinned_by and not graph.accepts(jnp.shape(x) for x in inputs):
        raise ValueError(
            f"apply: inputs of shapes {[jnp.shape(x) for x in inputs]}, but the graph serves "
            f"only {list(graph.input_shapes)}: {graph.pinned_by}"
        )
    names = _capture_names(graph, capture)
    free = _free_after(graph, set(graph.outputs) | set(names))
    env: dict[str, Any] = {n: jnp.asarray(x) for n, x in zip(graph.inputs, inputs, strict=True)}
    for i, node in enumerate(graph.nodes):
        fn = get_op(node.op)
        node_params = params.get(node.name, _NO_PARAMS)
        try:
            out = fn(node_params, *(env[s] for s in node.inputs), **dict(node.attrs))
        except KeyError as e:
            if e.args and e.args[0] in node_params:
                raise
            raise ValueError(
                f"apply: node {node.name!r} (op {node.op!r}) needs param {e.args[0]!r}; "
                f"params[{node.name!r}] has {sorted(node_params)}"
            ) from e
        env[node.name] = out
        for name in free.get(i, ()):
            del env[name]
    outs = tuple(env[n] for n in graph.outputs)
    result = outs[0] if len(outs) == 1 else outs
    if capture is None:
        return result
    return result, {n: env[n] for n in names}
