"""Thin wrappers calling MCT 2.6.1's threshold-selection functions on NumPy arrays.

Used by the parity suite (``tests/select/test_parity_mct.py``) and the benchmark
(``benchmarks/bench_search.py``). Every function here calls MCT's own selection code, unchanged,
and returns plain NumPy values in a dict, so callers never touch MCT objects. MCT is driven through
its public selection functions (``power_of_two_selection_tensor``, ``symmetric_selection_*``,
``uniform_selection_*`` in ``core/common/quantization/quantization_params_generation/``) and its
collectors, with stand-ins for the node and the Hessian service.

Importing this module imports MCT (which imports torch, a few seconds); the test file guards it
with ``pytest.importorskip("model_compression_toolkit")``.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import model_compression_toolkit.core.common.quantization.quantization_config as _qc
    from mct_quantizers import QuantizationMethod as _MctMethod
    from model_compression_toolkit.core.common.collectors.histogram_collector import (
        HistogramCollector,
    )
    from model_compression_toolkit.core.common.collectors.weighted_histogram_collector import (
        WeightedHistogramCollector,
    )
    from model_compression_toolkit.core.common.quantization.quantization_params_generation import (
        error_functions as _ef,
    )
    from model_compression_toolkit.core.common.quantization.quantization_params_generation import (
        power_of_two_selection as _pot,
    )
    from model_compression_toolkit.core.common.quantization.quantization_params_generation import (
        symmetric_selection as _sym,
    )
    from model_compression_toolkit.core.common.quantization.quantization_params_generation import (
        uniform_selection as _uni,
    )
    from model_compression_toolkit.core.common.quantization.quantizers import (
        quantizers_helpers as _qh,
    )

__all__ = [
    "ERROR_METHODS",
    "METHODS",
    "activation_loss",
    "activations",
    "histogram",
    "weights",
    "weights_loss",
]

METHODS = ("power_of_two", "symmetric", "uniform")
ERROR_METHODS = ("noclipping", "mse", "mae", "lp", "kl", "hmse")
MIN_THRESHOLD = 2.0**-16

_ERR = {
    "noclipping": _qc.QuantizationErrorMethod.NOCLIPPING,
    "mse": _qc.QuantizationErrorMethod.MSE,
    "mae": _qc.QuantizationErrorMethod.MAE,
    "kl": _qc.QuantizationErrorMethod.KL,
    "lp": _qc.QuantizationErrorMethod.LP,
    "hmse": _qc.QuantizationErrorMethod.HMSE,
}
_MCT_METHOD = {
    "power_of_two": _MctMethod.POWER_OF_TWO,
    "symmetric": _MctMethod.SYMMETRIC,
    "uniform": _MctMethod.UNIFORM,
}
_WEIGHT_FN = {
    "power_of_two": _pot.power_of_two_selection_tensor,
    "symmetric": _sym.symmetric_selection_tensor,
    "uniform": _uni.uniform_selection_tensor,
}
_HIST_FN = {
    "power_of_two": _pot.power_of_two_selection_histogram,
    "symmetric": _sym.symmetric_selection_histogram,
    "uniform": _uni.uniform_selection_histogram,
}
_NODE = SimpleNamespace(name="n")


class _FakeHessianService:
    """Stands in for MCT's ``HessianInfoService``: returns the injected per-element scores.

    MCT asks for ``(n_samples, *tensor.shape)`` scores (``_compute_hessian_for_hmse``) and uses
    ``sqrt(mean(scores, 0))`` (``get_threshold_selection_tensor_error_function``). We inject one
    sample, so MCT sees exactly ``scores``.
    """

    def __init__(self, scores: np.ndarray):
        self._scores = np.asarray(scores, dtype=np.float64)[None]

    def fetch_hessian(self, request):
        del request
        return {_NODE.name: self._scores}


def _key(v) -> str:
    key = getattr(v, "value", v)
    return str(key).lower()


def _as_np(v):
    return None if v is None else np.asarray(v, dtype=np.float64)


def weights(
    tensor: np.ndarray,
    *,
    method: str,
    error_method: str,
    n_bits: int = 8,
    per_channel: bool = True,
    channel_axis: int = 0,
    p: float = 2.0,
    hessian: np.ndarray | None = None,
    min_threshold: float = MIN_THRESHOLD,
) -> dict:
    """MCT 2.6.1's weight threshold/range for ``tensor`` (``*_selection_tensor``).

    Args:
      tensor: weights, any shape (torch layout).
      method: "power_of_two" | "symmetric" | "uniform".
      error_method: "noclipping" | "mse" | "mae" | "lp" | "kl" | "hmse".
      hessian: per-element positive scores, ``tensor``'s shape (HMSE only); MCT receives them as
        one Hessian sample through a fake ``hessian_info_service``.

    Returns:
      ``{"threshold": array}`` or ``{"range_min": array, "range_max": array}``, float64 arrays in
      MCT's own shapes (per-tensor shapes vary by method), plus ``"channel_axis"``.

    Raises:
      Whatever MCT raises.
    """
    method, error_method = _key(method), _key(error_method)
    service = None
    if error_method == "hmse":
        if hessian is None:
            raise ValueError("mct_ref.weights: HMSE needs hessian=")
        service = _FakeHessianService(hessian)
    params, axis = _WEIGHT_FN[method](
        np.asarray(tensor),
        p,
        n_bits,
        per_channel=per_channel,
        channel_axis=channel_axis,
        min_threshold=min_threshold,
        quant_error_method=_ERR[error_method],
        node=_NODE,
        hessian_info_service=service,
    )
    out = {k: _as_np(v) for k, v in params.items()}
    out["channel_axis"] = axis
    return out


def activations(
    bins: np.ndarray,
    counts: np.ndarray,
    *,
    method: str,
    error_method: str,
    n_bits: int = 8,
    p: float = 2.0,
    is_signed: bool | None = None,
    min_threshold: float = MIN_THRESHOLD,
) -> dict:
    """MCT 2.6.1's activation threshold/range from a histogram (``*_selection_histogram``).

    HMSE uses the MSE formula on whatever histogram it is given (pass a Hessian-weighted one,
    see :func:`histogram`).

    Args:
      bins: ``B + 1`` edges.  counts: ``B`` counts.
      is_signed: ``None`` lets each MCT function apply its own auto-signedness rule.

    Returns:
      ``{"threshold": array, "signed": bool}`` or ``{"range_min", "range_max", "signed"}``.
    """
    method, error_method = _key(method), _key(error_method)
    out = _HIST_FN[method](
        np.asarray(bins, dtype=np.float64),
        np.asarray(counts, dtype=np.float64),
        p,
        n_bits,
        None,
        None,
        min_threshold=min_threshold,
        quant_error_method=_ERR[error_method],
        is_signed=is_signed,
    )
    res = {k: _as_np(v) for k, v in out.items() if k != "is_signed"}
    res["signed"] = bool(out["is_signed"])
    return res


def histogram(batches, *, n_bins: int = 2048, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of ``batches`` with MCT's collector (lazy re-binning merge).

    Args:
      batches: iterable of arrays, one ``update`` each (cast to float64 as MCT does).
      n_bins: number of bins.
      weights: optional iterable of per-element weights (same shapes): uses MCT's
        ``WeightedHistogramCollector`` (the HMSE activation histogram).

    Returns:
      ``(bins[n_bins + 1], counts[n_bins])`` float64.
    """
    if weights is None:
        col = HistogramCollector(n_bins)
        for b in batches:
            col.update(np.asarray(b, dtype=np.float64))
    else:
        col = WeightedHistogramCollector(n_bins)
        for b, w in zip(batches, weights, strict=True):
            col.update(np.asarray(b, dtype=np.float64), np.asarray(w, dtype=np.float64))
    bins, counts = col.get_histogram()
    return np.asarray(bins, dtype=np.float64), np.asarray(counts, dtype=np.float64)


def weights_loss(
    tensor: np.ndarray,
    params: dict,
    *,
    method: str,
    error_method: str,
    n_bits: int = 8,
    per_channel: bool = True,
    channel_axis: int = 0,
    p: float = 2.0,
    hessian: np.ndarray | None = None,
) -> np.ndarray:
    """MCT's search loss of one candidate, evaluated by MCT's own error function.

    Mirrors how ``qparams_*_tensor_search`` calls the error function (argument order included:
    the per-tensor power-of-two search passes the *quantized* tensor first).
    Used to judge KL disagreements: is the other answer's loss as good as MCT's?

    Args:
      params: ``{"threshold": t}`` or ``{"range_min": a, "range_max": b}``, per channel any shape
        with ``C`` elements, per tensor one element.

    Returns:
      Per channel ``(C,)`` losses, per tensor a ``(1,)`` array.
    """
    method, error_method = _key(method), _key(error_method)
    x = np.asarray(tensor)
    service = _FakeHessianService(hessian) if error_method == "hmse" else None
    axis = -1 if per_channel else None
    err_fn = _ef.get_threshold_selection_tensor_error_function(
        _MCT_METHOD[method],
        _ERR[error_method],
        p,
        axis=axis,
        norm=False,
        n_bits=n_bits,
        signed=True,
        node=_NODE,
        hessian_info_service=service,
    )
    if per_channel:
        x = _qh.reshape_tensor_for_per_channel_search(x, channel_axis)
    if method == "uniform":
        a = np.asarray(params["range_min"], dtype=np.float64).reshape(-1)
        b = np.asarray(params["range_max"], dtype=np.float64).reshape(-1)
        if per_channel:
            a, b = a.reshape(-1, 1), b.reshape(-1, 1)
            q = _qh.uniform_quantize_tensor(x, a, b, n_bits)
            err = err_fn(x, q, np.concatenate([a, b], axis=1))
        else:
            q = _qh.uniform_quantize_tensor(x, a[0], b[0], n_bits)
            err = err_fn(x, q, np.array([a[0], b[0]]))
    else:
        t = np.asarray(params["threshold"], dtype=np.float64).reshape(-1)
        if per_channel:
            t = t.reshape(-1, 1)
            q = _qh.quantize_tensor(x, t, n_bits, True)
            err = err_fn(x, q, t)
        elif method == "power_of_two":
            q = _qh.quantize_tensor(x, t[0], n_bits, True)
            err = err_fn(q, x, threshold=t[0])  # MCT's argument order (quirk)
        else:
            q = _qh.quantize_tensor(x, t[0], n_bits, True)
            err = err_fn(x, q, t[0])
    return np.atleast_1d(np.asarray(err, dtype=np.float64)).reshape(-1)


def activation_loss(
    bins: np.ndarray,
    counts: np.ndarray,
    params: dict,
    *,
    method: str,
    error_method: str,
    n_bits: int = 8,
    p: float = 2.0,
    signed: bool = True,
) -> float:
    """MCT's histogram search loss of one candidate, by MCT's own error functions
    (``_*_error_histogram``).

    KL ranges as in MCT: power-of-two ``[-t, t]``; symmetric ``[-t, t]`` or ``[0, t]`` when
    unsigned; uniform ``[a, b]``.
    """
    from model_compression_toolkit.core.common.quantization.quantization_params_generation import (
        qparams_search as _qs,
    )

    method, error_method = _key(method), _key(error_method)
    bins = np.asarray(bins, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    err_fn = _ef.get_threshold_selection_histogram_error_function(
        _MCT_METHOD[method], _ERR[error_method], p
    )
    if method == "uniform":
        mm = np.array(
            [float(np.ravel(params["range_min"])[0]), float(np.ravel(params["range_max"])[0])]
        )
        q = _qh.uniform_quantize_tensor(bins, mm[0], mm[1], n_bits)
        return float(
            _qs.qparams_selection_histogram_search_error_function(
                err_fn, bins, q, counts, min_max_range=mm
            )
        )
    t = float(np.ravel(params["threshold"])[0])
    q = _qh.quantize_tensor(bins, t, n_bits, signed)
    if method == "symmetric" and error_method == "kl":
        rng = np.array([-t, t]) if signed else np.array([0.0, t])
        return float(
            _qs.kl_qparams_selection_histogram_search_error_function(
                _ef._kl_error_histogram, bins, q, counts, min_max_range=rng
            )
        )
    return float(
        _qs.qparams_selection_histogram_search_error_function(err_fn, bins, q, counts, threshold=t)
    )
