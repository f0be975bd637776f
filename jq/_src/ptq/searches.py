"""The search passes: every kernel's and every activation's quantization parameters.

Kernels: one ``weights_qparams_batch`` call per candidate error method (one, or AUTO's list).
Searches that need only the weights start in a thread before the statistics pass
(:class:`KernelSearches`), so their compilation and run overlap it; HMSE waits for the Hessian
scores, computed from samples of the calibration data. Activations: one
``activation_qparams_batch`` call per method over the histograms of every searched value;
values whose op bounds them (sigmoid, tanh, ...) take their op's fixed range.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from ..runtime.timing import StageClock, compile_seconds
from ..select.activations import activation_qparams_batch
from ..select.enums import AutoErrorMethod, ErrorMethod, QuantizationMethod
from ..select.quantizers import pot
from ..select.types import QParams
from ..select.weights import weights_qparams_batch
from .auto import candidate_methods
from .calibrate import Statistics
from .data import Retained
from .placement import BOUNDED_OPS
from .prepare import Prepared, Settings


class KernelChoice(NamedTuple):
    """Every quantized kernel's parameters.

    Attributes:
      qparams: per kernel (``Prepared.kernel_names`` order), the chosen :class:`QParams`.
      methods: per kernel, the chosen error method's name.
      candidates: per candidate method, every kernel's :class:`QParams` (one entry unless AUTO).
      method_list: the candidate methods, in preference order.
    """

    qparams: list[QParams]
    methods: list[str]
    candidates: list[list[QParams]]
    method_list: tuple[ErrorMethod, ...]


class ActQuant(NamedTuple):
    """One activation quantizer's parameters: row ``entry`` of ``qparams`` (a batch result)
    and the name of the error method that chose it (``"minmax"`` for a bounded op)."""

    qparams: QParams
    entry: int
    method: str


class ActChoice(NamedTuple):
    """Every activation quantizer's parameters.

    Attributes:
      quant: ``{value: ActQuant}`` for every quantized value.
      searched: the values whose range was searched (``Prepared.searched``).
      candidates: per candidate method, the batch :class:`QParams` over ``searched``.
      method_list: the candidate methods, in preference order.
    """

    quant: dict[str, ActQuant]
    searched: list[str]
    candidates: list[QParams]
    method_list: tuple[ErrorMethod, ...]


class KernelSearches:
    """The kernel searches of one PTQ call; those that need no Hessian scores start at once in
    a thread. Use as a context manager: the thread pool is shut down on exit, error or not."""

    def __init__(
        self, prep: Prepared, st: Settings, clock: StageClock, mesh: Mesh | None = None
    ) -> None:
        self._prep, self._st, self._clock, self._mesh = prep, st, clock, mesh
        self._main = threading.get_ident()
        need = bool(prep.kernel_names) and st.needs_scores
        qc = st.qc
        self.need_scores = need
        self.methods = (
            candidate_methods("weights", hessian=need)
            if st.w_auto
            else _single(qc.weights_error_method)
        )
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._early: dict[ErrorMethod, Future] = {}
        if prep.kernel_names:
            self._early = {
                m: self._pool.submit(self.search, m)
                for m in self.methods
                if m is not ErrorMethod.HMSE
            }

    def __enter__(self) -> KernelSearches:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def search(self, method: ErrorMethod, hessians=None) -> list[QParams]:
        """Every kernel's parameters under ``method`` (one compiled batch search)."""
        c0 = compile_seconds()
        try:
            return self._search(method, hessians)
        finally:
            if threading.get_ident() != self._main:  # the early searches' own thread
                self._clock.add_compile("weights", compile_seconds() - c0)

    def _search(self, method: ErrorMethod, hessians) -> list[QParams]:
        prep, tp, qc = self._prep, self._st.tp, self._st.qc
        return weights_qparams_batch(
            [prep.params[k]["weight"] for k in prep.kernel_names],
            n_bits=tp.weights_n_bits,
            method=tp.weights_quantization_method,
            error_method=method,
            per_channel=tp.weights_per_channel_threshold,
            channel_axis=[a for _, a in prep.plan.kernels],
            p=qc.l_p_value,
            hessians=hessians,
            mct_compat=qc.mct_compat,
            min_threshold=qc.min_threshold,
            return_errors=self._st.w_auto,
            mesh=self._mesh,
            # One program per model anyway (every group in one compiled call): padding to
            # shared buckets would only add work (measured 20 % on resnet18's kernels).
            _exact_shapes=True,
        )

    def results(self, hessians=None) -> list[list[QParams]]:
        """Per candidate method, every kernel's parameters (waits for the early searches)."""
        if not self._prep.kernel_names:
            return []
        return [
            self._early[m].result() if m in self._early else self.search(m, hessians)
            for m in self.methods
        ]


def select_kernels(
    searches: KernelSearches,
    prep: Prepared,
    retained: Retained,
    clock: StageClock,
    *,
    progress: bool = False,
) -> KernelChoice:
    """The kernel pass: Hessian scores where needed, then every candidate method's search.

    Needs the calibration samples ``retained`` (Hessian scores) from the statistics pass.
    """
    hessians = None
    names = prep.kernel_names
    if searches.need_scores:
        from .hessian import weight_scores

        shapes = tuple((1,) + tuple(s[1:]) for s in prep.graphs.first_shapes)
        xs = [np.stack(s) for s in retained.samples]  # (S, 1, ...): S samples of batch 1
        scores = weight_scores(prep.graphs(shapes), prep.params, xs, names, progress=progress)
        hessians = [scores[k] for k in names]
        clock.lap("hessian")
    cands = searches.results(hessians)
    first = searches.methods[0].value
    return KernelChoice(cands[0] if cands else [], [first] * len(names), cands, searches.methods)


def select_activations(
    prep: Prepared, stats: Statistics, st: Settings, mesh: Mesh | None = None
) -> ActChoice:
    """The activation pass: every searched value's range from its histogram, one compiled
    batch search per candidate method (split over ``mesh``'s devices); bounded ops take their
    op's range."""
    tp, qc = st.tp, st.qc
    searched = prep.searched
    methods = (
        candidate_methods("activation") if st.act_auto else _single(qc.activation_error_method)
    )
    cands: list[QParams] = []
    quant: dict[str, ActQuant] = {}
    if searched:
        bins = np.stack([stats.histograms[v][0] for v in searched])
        counts = np.stack([stats.histograms[v][1] for v in searched])
        for m in methods:  # AUTO: one compiled batch search per candidate method
            batch_qp = activation_qparams_batch(
                bins,
                counts,
                n_bits=tp.activation_n_bits,
                method=tp.activation_quantization_method,
                error_method=m,
                p=qc.l_p_value,
                mct_compat=qc.mct_compat,
                min_threshold=qc.min_threshold,
                z_threshold=qc.z_threshold,
                return_errors=st.act_auto,
                mesh=mesh,
            )
            cands.append(jax.device_get(batch_qp))
        quant = {v: ActQuant(cands[0], i, methods[0].value) for i, v in enumerate(searched)}
    for v in prep.plan.activations:
        op = prep.op_of(v)
        if op in BOUNDED_OPS:
            qp = _bounded_qparams(op, tp.activation_quantization_method, qc.min_threshold)
            quant[v] = ActQuant(qp, 0, "minmax")
    return ActChoice(quant, searched, cands, methods)


def _single(method: ErrorMethod | AutoErrorMethod) -> tuple[ErrorMethod]:
    if not isinstance(method, ErrorMethod):  # AUTO takes candidate_methods instead
        raise TypeError(f"not a single error method: {method!r}")
    return (method,)


def _bounded_qparams(op: str, method: QuantizationMethod, min_threshold: float) -> QParams:
    lo, hi = BOUNDED_OPS[op]
    signed = lo < 0
    if method is QuantizationMethod.POWER_OF_TWO:
        t = float(pot(jnp.float32(abs(hi)), min_threshold))
    elif method is QuantizationMethod.SYMMETRIC:
        t = max(abs(hi), min_threshold)
    else:
        return QParams(
            range_min=np.array([lo]), range_max=np.array([hi]), signed=np.array([signed])
        )
    return QParams(threshold=np.array([t]), signed=np.array([signed]))
