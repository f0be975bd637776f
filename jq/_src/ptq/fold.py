"""Batch-norm folding on jq graphs (MCT 2.6.1's ``BatchNormalizationFolding``, a
pre-statistics rewrite).

A ``batch_norm`` whose input is a ``conv`` / ``conv_transpose`` (or ``linear``, 2-D output)
read by nothing else is folded into that layer: with ``s = gamma / sqrt(var + eps)``,
``W' = W * s`` along the output channels and ``b' = (b - mean) * s + beta``. The folded layer
keeps the layer's name; readers of the batch norm read the layer. MCT folds into Conv2d and
ConvTranspose2d only; jq's default mode also folds into Linear (``include_linear``).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

from ..graph.graph import Graph, Node

_FOLDABLE = ("conv", "conv_transpose")


def rename_inputs(nodes: list[Node], mapping: Mapping[str, str]) -> list[Node]:
    """Nodes with every input name ``k`` in ``mapping`` replaced by ``mapping[k]``."""
    out = []
    for n in nodes:
        if any(i in mapping for i in n.inputs):
            n = n.replace(inputs=tuple(mapping.get(i, i) for i in n.inputs))
        out.append(n)
    return out


# The arithmetic runs in NumPy on the host: each eager jax.numpy op would compile a program
# per shape (GhostNet's 96 layers: 250 programs, 10 s), and NumPy's float32 ops round alike.
def _bn_scale_shift(p: Mapping, eps: float):
    var, mean = np.asarray(p["running_var"]), np.asarray(p["running_mean"])
    scale = 1.0 / np.sqrt(var + np.asarray(eps, var.dtype))
    if "weight" in p:
        scale = scale * np.asarray(p["weight"])
    shift = -mean * scale
    if "bias" in p:
        shift = shift + np.asarray(p["bias"])
    return scale, shift


def _fold_weight(op: str, w, scale, groups: int):
    w = np.asarray(w)
    if op == "conv" or op == "linear":
        return w * np.reshape(scale, (-1,) + (1,) * (w.ndim - 1))
    # conv_transpose: weight (in, out/groups, *k); output channel = g * out_g + j.
    cin, cout_g, *k = w.shape
    wg = np.reshape(w, (groups, cin // groups, cout_g, *k))
    sg = np.reshape(scale, (groups, 1, cout_g) + (1,) * len(k))
    return np.reshape(wg * sg, w.shape)


def fold_batch_norm(
    graph: Graph, params: Mapping, *, include_linear: bool = True
) -> tuple[Graph, dict, tuple[str, ...]]:
    """Fold every foldable ``batch_norm`` into the layer before it.

    Args:
      graph: the float graph.
      params: its params pytree (not modified).
      include_linear: also fold into ``linear`` layers with a 2-D output (known shape).

    Returns:
      ``(graph, params, folded)``: the new graph and params (new dicts; untouched entries are
      shared) and the names of the batch norms folded.
    """
    kinds = _FOLDABLE + (("linear",) if include_linear else ())
    params = dict(params)
    drop: set[str] = set()
    mapping: dict[str, str] = {}
    new_nodes: dict[str, Node] = {}
    folded = []
    outputs = set(graph.outputs)
    for bn in graph.nodes:
        if bn.op != "batch_norm" or len(bn.inputs) != 1:
            continue
        src = bn.inputs[0]
        if src in graph.inputs or src in outputs:
            continue
        layer = graph.node(src)
        if layer.op not in kinds or len(graph.consumers(src)) != 1:
            continue
        if layer.op == "linear" and (layer.shape is None or len(layer.shape) != 2):
            continue
        lp = dict(params.get(src, {}))
        scale, shift = _bn_scale_shift(params[bn.name], bn.attr("eps"))
        groups = layer.attr("groups", 1)
        lp["weight"] = jax.device_put(_fold_weight(layer.op, lp["weight"], scale, groups))
        bias = np.asarray(lp.get("bias", np.zeros_like(scale)))
        lp["bias"] = jax.device_put(bias * scale + shift)
        params[src] = lp
        params.pop(bn.name, None)
        drop.add(bn.name)
        mapping[bn.name] = src
        folded.append(bn.name)
        pshapes = {k: tuple(v.shape) for k, v in lp.items()}
        new_nodes[src] = layer.replace(param_shapes=pshapes)
    if not folded:
        return graph, params, ()
    nodes = [new_nodes.get(n.name, n) for n in graph.nodes if n.name not in drop]
    nodes = rename_inputs(nodes, mapping)
    outs = tuple(mapping.get(o, o) for o in graph.outputs)
    return graph.replace(nodes=tuple(nodes), outputs=outs), params, tuple(folded)
