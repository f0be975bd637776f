"""Kernel layers: a ``conv_general_dilated`` or ``dot_general`` whose one operand comes from
the params becomes a jq ``conv`` / ``linear`` node with its kernel in jq's layout, named after
the params' owner (``conv.kernel`` -> node ``conv``). An embedding lookup (``jnp.take`` on a
param table) becomes an ``embedding`` node.

The kernel is canonicalised here, once: a Flax ``HWIO`` conv kernel is stored ``OIHW``
(``np.transpose`` by the dimension numbers' ``rhs_spec``), a dense ``(in, out)`` kernel is
stored ``(out, in)``, a ``DenseGeneral`` kernel ``(in, heads, dim)`` as ``(heads * dim, in)``
followed by a reshape. The data keep the program's layout: the conv reads its input stored as
``lhs_spec`` says and its output is stored ``out_spec`` (a lazy permutation, see
:mod:`jq._src.jax_frontend.layout`).
"""

from __future__ import annotations

import math

import numpy as np

from .context import Builder, Unconvertible
from .layout import identity
from .naming import module_of
from .primitives import converter
from .values import Const, Val

_CLOSED_HINT = (
    "its kernel is an array the function closes over (a jaxpr constant), not a param: pass it "
    "in params so that it is quantized as a kernel"
)


def _kernel(c: Const, op: str) -> str:
    """The node name of a kernel layer: its params' owner (the op's name for root params)."""
    if c.closed or not c.paths:
        raise Unconvertible(_CLOSED_HINT)
    return module_of(c.paths) or op


@converter("conv_general_dilated")
def conv(b: Builder, eqn, args):
    """``lax.conv_general_dilated`` with a param kernel -> ``conv`` (any dimension numbers,
    feature groups, dilation, explicit padding)."""
    x, k = args
    p = eqn.params
    if not (isinstance(x, Val) and isinstance(k, Const)):
        raise Unconvertible("a convolution whose kernel is computed from the input")
    base = _kernel(k, "conv")
    if any(d != 1 for d in p["lhs_dilation"]):
        raise Unconvertible("transposed convolution (lhs_dilation > 1) is not supported yet")
    if p["batch_group_count"] != 1:
        raise Unconvertible("batch_group_count > 1 (a weight-gradient convolution)")
    dn = p["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = (tuple(s) for s in (dn.lhs_spec, dn.rhs_spec, dn.out_spec))
    if not 1 <= len(lhs_spec) - 2 <= 3:
        raise Unconvertible(f"{len(lhs_spec) - 2}-d convolution (1 to 3 spatial dims)")
    weight = np.ascontiguousarray(np.transpose(k.value, rhs_spec))  # (O, I/groups, *kernel)
    attrs = {
        "stride": tuple(p["window_strides"]),
        "padding": tuple(tuple(int(v) for v in q) for q in p["padding"]),
        "dilation": tuple(p["rhs_dilation"]),
        "groups": int(p["feature_group_count"]),
    }
    aval = eqn.outvars[0].aval
    shape = tuple(aval.shape[i] for i in out_spec)
    name = b.emit(
        "conv",
        (b.stored_as(x, lhs_spec),),
        base=base,
        shape=shape,
        attrs=attrs,
        params={"weight": weight},
        scoped=False,
    )
    return [b.val(name, out_spec, aval)]


def _free(ndim: int, used: tuple[int, ...]) -> list[int]:
    return [i for i in range(ndim) if i not in used]


@converter("dot_general")
def dot_general(b: Builder, eqn, args):
    """``lax.dot_general`` with one param operand -> ``linear`` (plus a permute and reshapes
    when the contraction is not over the data's last axis or the kernel has several free
    axes); two activations -> jq's ``dot_general`` op."""
    lhs, rhs = args
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    aval = eqn.outvars[0].aval
    if isinstance(lhs, Val) and isinstance(rhs, Val):
        inputs = (b.logical(lhs), b.logical(rhs))
        dn = ((tuple(lc), tuple(rc)), (tuple(lb), tuple(rb)))
        name = b.emit(
            "dot_general",
            inputs,
            base="dot_general",
            shape=aval.shape,
            attrs={"dimension_numbers": dn},
        )
        return [b.val(name, identity(len(aval.shape)), aval)]
    kernel_first = isinstance(lhs, Const)
    x, k = (rhs, lhs) if kernel_first else (lhs, rhs)
    xc, kc = (tuple(rc), tuple(lc)) if kernel_first else (tuple(lc), tuple(rc))
    base = _kernel(k, "linear")
    if lb or rb:
        raise Unconvertible("a batched dot_general with a param operand (per-batch kernels)")
    free_x, free_k = _free(len(x.shape), xc), _free(k.value.ndim, kc)
    fx_shape = tuple(x.shape[i] for i in free_x)
    fk_shape = tuple(k.value.shape[i] for i in free_k)
    n_in = math.prod(x.shape[i] for i in xc)
    n_out = math.prod(fk_shape)
    weight = np.transpose(k.value, free_k + list(kc)).reshape(n_out, n_in)
    src = b.logical(x)
    order = tuple(free_x) + xc
    if order != identity(len(x.shape)):
        src = b.stored_as(x, order)
    if len(xc) != 1:
        shape = fx_shape + (n_in,)
        src = b.emit("reshape", (src,), base="reshape", shape=shape, attrs={"shape": shape})
    name = b.emit(
        "linear",
        (src,),
        base=base,
        shape=fx_shape + (n_out,),
        attrs={},
        params={"weight": np.ascontiguousarray(weight)},
        scoped=False,
    )
    if len(free_k) != 1:
        shape = fx_shape + fk_shape
        name = b.emit("reshape", (name,), base="reshape", shape=shape, attrs={"shape": shape})
    nx, nk = len(fx_shape), len(fk_shape)
    # Stored as (x free..., kernel free...); a kernel-first product is logically the reverse.
    perm = tuple(range(nk, nk + nx)) + tuple(range(nk)) if kernel_first else identity(nx + nk)
    return [b.val(name, perm, aval)]


@converter("gather")
def embedding(b: Builder, eqn, args):
    """``jnp.take(table, indices, axis=0)`` on a 2-D param table -> ``embedding``."""
    table, idx = args
    dn = eqn.params["dimension_numbers"]
    ok = (
        isinstance(table, Const)
        and isinstance(idx, Val)
        and table.value.ndim == 2
        and bool(table.paths)
        and tuple(dn.collapsed_slice_dims) == (0,)
        and tuple(dn.start_index_map) == (0,)
        and tuple(dn.offset_dims) == (len(idx.shape) - 1,)
        and tuple(eqn.params["slice_sizes"]) == (1, table.value.shape[1])
        and idx.shape[-1:] == (1,)
    )
    if not ok:
        raise Unconvertible(
            "general indexing; jq maps jnp.take / table[indices] on a 2-D param table "
            "(embedding) and static slices"
        )
    shape = tuple(idx.shape[:-1])
    src = b.emit("reshape", (b.logical(idx),), base="reshape", shape=shape, attrs={"shape": shape})
    aval = eqn.outvars[0].aval
    name = b.emit(
        "embedding",
        (src,),
        base=module_of(table.paths) or "embedding",
        shape=aval.shape,
        params={"weight": np.asarray(table.value)},
        scoped=False,
    )
    return [b.val(name, identity(len(aval.shape)), aval)]
