"""Threshold / range selection for weight tensors: :func:`weights_qparams` and
:func:`weights_qparams_batch`.

MCT 2.6.1's ``power_of_two_selection_tensor``, ``symmetric_selection_tensor`` and
``uniform_selection_tensor``. A call checks its options and tensors (:mod:`.weight_rows`),
then takes one of two routes: the default mode's fixed tile programs (:mod:`.tiled_weights`)
or stacks of bucketed layouts (:mod:`.weight_stacks`, ``mct_compat=True`` and KL); both
search each tensor with the maths of :mod:`.weight_search`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
from jax.typing import ArrayLike

from ..runtime.cache import ensure_compilation_cache
from ..runtime.mesh import check_mesh
from .enums import ErrorMethod, QuantizationMethod
from .options import parse_options, x64
from .quantizers import MIN_THRESHOLD
from .tiled_weights import search_tiled, tiled
from .types import QParams
from .weight_rows import WeightRows, finish, prepare_all
from .weight_rows import check_group_size as check_group_size
from .weight_stacks import group, search_stacked, unstack


def weights_qparams(
    tensor: ArrayLike,
    *,
    n_bits: int = 8,
    method: QuantizationMethod | str = "symmetric",
    error_method: ErrorMethod | str = "mse",
    per_channel: bool = True,
    channel_axis: int = 0,
    p: float = 2.0,
    hessian: ArrayLike | None = None,
    mct_compat: bool = False,
    min_threshold: float = MIN_THRESHOLD,
    return_errors: bool = False,
    group_size: int | None = None,
) -> QParams:
    """Choose the quantization parameters of a weight tensor by minimising an error metric.

    Args:
      tensor: float array, any rank (torch layout: output channels on axis 0 for conv/linear).
      n_bits: bit width, 1..16.
      method: ``QuantizationMethod`` or its name: ``"power_of_two"``, ``"symmetric"``,
        ``"uniform"``.
      error_method: ``ErrorMethod`` or its name: ``"noclipping"``, ``"mse"``, ``"mae"``,
        ``"kl"``, ``"lp"``, ``"hmse"``.
      per_channel: one parameter per slice along ``channel_axis`` (else one for the tensor).
      channel_axis: the channel axis (``per_channel`` only).
      p: exponent of ``"lp"``.
      hessian: per-element Hessian scores, ``tensor``'s shape, ``>= 0`` (``"hmse"`` only).
        HMSE minimises ``mean(hessian * (x - q)^2)`` (per channel when ``per_channel``).
      mct_compat: reproduce MCT 2.6.1 exactly, quirks included, in float64.
      min_threshold: floor of every threshold.
      return_errors: also return every candidate's error (``QParams.errors``/``candidates``;
        their channel axis has one entry per row of the search: ``C * G`` with groups).
      group_size: jq only: one parameter per group of ``group_size`` consecutive inputs of each
        output channel (per-group granularity, as llm-compressor's / compressed-tensors'
        ``group_size``). The inputs of a channel are the tensor's other axes flattened in
        order after moving ``channel_axis`` to the front: a Linear weight ``(out, in)``
        groups along ``in``; a torch conv kernel ``(out, in, kh, kw)`` along its flattened
        ``in x kh x kw``. Must divide that size. Every method and error method but KL (a
        group fills too few histogram bins); not with ``mct_compat`` (MCT has no per-group
        mode). Each (channel, group) is searched as a channel of the ``(C * G, group_size)``
        matrix: the same results, on the same fixed tile programs (no new compiled program
        per shape).

    Returns:
      ``QParams``: ``threshold`` (power-of-two, symmetric) or ``range_min``/``range_max``
      (uniform), shaped ``(1, .., C, .., 1)`` per channel, ``()`` per tensor, or
      ``(C, G)`` with ``group_size`` (``G = inputs / group_size``; pass ``group_size`` and
      ``channel_axis`` to :func:`jq.fake_quant` too); ``signed=True``.

    Raises:
      ValueError / TypeError: bad input, naming the argument (a ``group_size`` that does not
        divide the input size, or with KL, ``mct_compat`` or ``per_channel=False``).

    Examples:
      >>> import numpy as np
      >>> import jq
      >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
      >>> qp = jq.weights_qparams(w, method="symmetric", error_method="mse")
      >>> qp.threshold.shape  # one threshold per output channel (axis 0)
      (4, 1, 1, 1)
      >>> [round(float(t), 3) for t in qp.threshold.ravel()]
      [2.421, 2.276, 2.225, 1.72]
      >>> wq = jq.fake_quant(w, qp, n_bits=8)
      >>> wq.shape, wq.dtype
      ((4, 3, 3, 3), dtype('float32'))
      >>> lin = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
      >>> qg = jq.weights_qparams(lin, n_bits=4, group_size=32)
      >>> qg.threshold.shape  # (out_channels, in / group_size)
      (8, 2)
      >>> jq.fake_quant(lin, qg, n_bits=4, group_size=32).shape
      (8, 64)

    Reference: MCT 2.6.1's ``power_of_two_selection_tensor``, ``symmetric_selection_tensor``,
    ``uniform_selection_tensor``.
    """
    return weights_qparams_batch(
        [tensor],
        n_bits=n_bits,
        method=method,
        error_method=error_method,
        per_channel=per_channel,
        channel_axis=channel_axis,
        p=p,
        hessians=None if hessian is None else [hessian],
        mct_compat=mct_compat,
        min_threshold=min_threshold,
        return_errors=return_errors,
        group_size=group_size,
        _fn="weights_qparams",
    )[0]


def weights_qparams_batch(
    tensors: Sequence[ArrayLike],
    *,
    n_bits: int = 8,
    method: QuantizationMethod | str = "symmetric",
    error_method: ErrorMethod | str = "mse",
    per_channel: bool = True,
    channel_axis: int | Sequence[int] = 0,
    p: float = 2.0,
    hessians: Sequence[ArrayLike] | None = None,
    mct_compat: bool = False,
    min_threshold: float = MIN_THRESHOLD,
    return_errors: bool = False,
    mesh: Any = None,
    group_size: int | None = None,
    _fn: str = "weights_qparams_batch",
    _exact_shapes: bool = False,
) -> list[QParams]:
    """:func:`weights_qparams` for many tensors in one compiled call.

    In the default mode (every error method but KL, tensors up to 4M elements) the tensors'
    rows are packed into fixed-size tiles and searched by a fixed set of compiled programs
    whatever the shapes and options (:mod:`.tiled_weights`); with ``mct_compat=True`` (and for
    KL) tensors of the same bucketed layout are stacked and searched one after the other with
    ``lax.map``, every layout in the same compiled program. Results equal the single calls.

    Args:
      tensors: list of float arrays.
      channel_axis: one axis for all, or one per tensor.
      hessians: ``None`` or one score array per tensor (``"hmse"``).
      mesh: jq only: a ``jax.sharding.Mesh`` whose devices split the tensors of each search
        layout between them (same results); ``None``: one device.
      group_size: one for all tensors (see :func:`weights_qparams`); results ``(C, G)``.
      Other arguments as in :func:`weights_qparams`.

    Returns:
      One ``QParams`` per tensor, in order.
    """
    fn = _fn
    ensure_compilation_cache()
    n_bits, method, error_method, p, min_threshold = parse_options(
        n_bits, method, error_method, p, min_threshold, fn
    )
    group_size = check_group_size(
        group_size,
        per_channel=per_channel,
        error_method=error_method,
        compat=mct_compat,
        fn=fn,
    )
    preps = prepare_all(
        tensors,
        channel_axis,
        hessians,
        per_channel=per_channel,
        error_method=error_method,
        compat=mct_compat,
        fn=fn,
        group_size=group_size,
    )
    mesh = check_mesh(mesh, fn)
    if not mct_compat and tiled([prep.x2d for prep in preps], error_method):
        devices = None if mesh is None else list(mesh.devices.flat)
        options = (n_bits, method, error_method, per_channel, p, min_threshold)
        return _tiled_call(preps, *options, return_errors, devices)
    groups = group(preps, per_channel=per_channel, compat=mct_compat, exact=_exact_shapes)
    static = dict(
        method=method,
        error_method=error_method,
        n_bits=n_bits,
        per_channel=per_channel,
        compat=mct_compat,
    )
    with x64(mct_compat):
        outs = search_stacked(preps, groups, p, min_threshold, static, _exact_shapes, mesh)
    with x64(mct_compat):
        return unstack(outs, preps, groups, static, return_errors)


def _tiled_call(
    preps: list[WeightRows],
    n_bits: int,
    method: QuantizationMethod,
    error_method: ErrorMethod,
    per_channel: bool,
    p: float,
    min_threshold: float,
    return_errors: bool,
    devices: list[Any] | None,
) -> list[QParams]:
    """The default mode's route: every tensor searched on tiles (:mod:`.tiled_weights`)."""
    hmse = error_method is ErrorMethod.HMSE
    results = search_tiled(
        [prep.x2d.astype(np.float32) for prep in preps],
        [cast(np.ndarray, prep.w2d) for prep in preps] if hmse else None,
        method=method,
        error_method=error_method,
        n_bits=n_bits,
        per_channel=per_channel,
        p=p,
        min_threshold=min_threshold,
        return_errors=return_errors,
        devices=devices,
    )
    options: dict[str, Any] = dict(
        method=method, error_method=error_method, per_channel=per_channel
    )
    return [
        finish(res, prep, compat=False, return_errors=return_errors, **options)
        for res, prep in zip(results, preps, strict=True)
    ]
