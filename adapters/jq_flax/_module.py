"""Quantized graphs back in the user's framework: an NNX module, or a Linen-style apply."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx

import jq

_apply = jax.jit(jq.apply, static_argnums=0)


class QuantizedParams(nnx.Variable):
    """The params pytree of a quantized graph (fake-quantized kernels, quantizer grids)."""


def _graph_for(graph: jq.Graph, rebase: Callable | None, shapes) -> jq.Graph:
    if tuple(graph.input_shapes) == shapes:
        return graph
    if rebase is None:
        raise ValueError(
            f"quantized model: inputs of shapes {shapes}, but the graph was built for "
            f"{graph.input_shapes}"
        )
    return rebase(shapes)


class QuantizedModule(nnx.Module):
    """An NNX module computing a quantized jq graph (``jq.apply``, jitted).

    Attributes:
      graph: the quantized :class:`jq.Graph` (inputs in the float model's layout).
      params: :class:`QuantizedParams` holding the graph's params.

    Inputs of other shapes than the calibration batches' run the quantized graph rebased on
    the float model converted for those shapes (once per shapes).
    """

    def __init__(self, graph: jq.Graph, params: dict, graph_for: Callable | None = None) -> None:
        self.graph = graph
        self.params = QuantizedParams(params)
        self.graph_for = None if graph_for is None else functools.lru_cache(maxsize=16)(graph_for)

    def __call__(self, *inputs: Any) -> Any:
        shapes = tuple(tuple(int(d) for d in np.shape(x)) for x in inputs)
        graph = _graph_for(self.graph, self.graph_for, shapes)
        return _apply(graph, self.params.get_value(), *inputs)


class LinenQuantized(NamedTuple):
    """A quantized Linen model: ``apply(variables, *inputs)`` and its ``variables``
    (``{"params": quantized graph params}``), as ``module.apply`` and its variables are used.

    ``model(*inputs)`` is ``model.apply(model.variables, *inputs)``.
    """

    apply: Callable[..., Any]
    variables: dict

    def __call__(self, *inputs: Any) -> Any:
        return self.apply(self.variables, *inputs)


def linen_quantized(graph: jq.Graph, params: dict, graph_for: Callable | None) -> LinenQuantized:
    cached = None if graph_for is None else functools.lru_cache(maxsize=16)(graph_for)

    def apply(variables: dict, *inputs: Any) -> Any:
        shapes = tuple(tuple(int(d) for d in np.shape(x)) for x in inputs)
        return _apply(_graph_for(graph, cached, shapes), variables["params"], *inputs)

    return LinenQuantized(apply, {"params": params})
