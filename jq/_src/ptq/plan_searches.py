"""The searches of the plan: every planned kernel's and activation's quantization parameters
(the batched searches of ``jq._src.select``, once per candidate error method).

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
from .auto_eval import candidate_methods
from .calibrate import Statistics
from .data import CalibrationData, Retained
from .placement import BOUNDED_OPS, Plan, kernel_group_size
from .prepare import Prepared
from .settings import Settings


class KernelChoice(NamedTuple):
    """Every quantized kernel's parameters.

    Attributes:
      qparams: per kernel (``Prepared.kernel_names`` order), the chosen :class:`QParams`.
      methods: per kernel, the chosen error method's name.
      candidates: per AUTO candidate method, each of the ``auto`` kernels' :class:`QParams`
        (empty without AUTO).
      method_list: AUTO's candidate methods, in preference order (empty without AUTO).
      auto: the kernels whose method AUTO chooses (``Prepared.kernel_names`` order).
    """

    qparams: list[QParams]
    methods: list[str]
    candidates: list[list[QParams]]
    method_list: tuple[ErrorMethod, ...]
    auto: tuple[str, ...] = ()


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
      candidates: per AUTO candidate method, each of the ``auto`` values' :class:`ActQuant`.
      method_list: AUTO's candidate methods, in preference order (empty without AUTO).
      auto: the searched values whose method AUTO chooses.
    """

    quant: dict[str, ActQuant]
    searched: list[str]
    candidates: list[list[ActQuant]]
    method_list: tuple[ErrorMethod, ...]
    auto: tuple[str, ...] = ()


class KernelJob(NamedTuple):
    """One compiled batch search: the kernels ``names`` under one error method and grid.

    Kernels group by (method, bits, quantization method, per-channel, group size), so
    steered layers are searched in a few batches, and a run without steering in one per
    method (and group size), as before.
    """

    method: ErrorMethod
    n_bits: int
    qmethod: QuantizationMethod
    per_channel: bool
    names: tuple[str, ...]
    return_errors: bool
    group_size: int | None = None


def kernel_jobs(
    names: list[str],
    methods_of: dict[str, tuple[ErrorMethod, ...]],
    plan: Plan,
    group_of: dict[str, int | None] | None = None,
) -> list[KernelJob]:
    """The batch searches that give every kernel of ``names`` its candidate methods' results
    (``methods_of[k]``), grouped by method and grid (and group size, ``group_of``), in
    method order."""
    Key = tuple[ErrorMethod, int, QuantizationMethod, bool, int | None]
    groups: dict[Key, list[str]] = {}
    errors: dict[Key, bool] = {}
    for k in names:
        cfg = plan.kernel(k)
        for m in methods_of[k]:
            key = (m, cfg.search_n_bits, cfg.method, cfg.per_channel, (group_of or {}).get(k))
            groups.setdefault(key, []).append(k)
            errors[key] = errors.get(key, False) or len(methods_of[k]) > 1
    return [
        KernelJob(m, b, q, c, tuple(ks), errors[(m, b, q, c, g)], g)
        for (m, b, q, c, g), ks in groups.items()
    ]


def kernel_groups(prep: Prepared, st: Settings) -> dict[str, int | None]:
    """``{kernel: group size or None}`` under the platform's ``weights_group_size``, checked.

    Raises:
      ValueError: with ``mct_compat`` (MCT has no per-group mode), or for a grouped layer
        whose input size the group size does not divide or whose error method is KL, naming
        the layer.
    """
    size = st.tp.weights_group_size
    out = {
        k: kernel_group_size(prep.nodes[k].op, prep.plan.kernel(k).per_channel, size)
        for k in prep.kernel_names
    }
    grouped = [k for k, g in out.items() if g is not None]
    if size is None or not grouped:
        return out
    if st.compat:
        raise ValueError(
            f"{st.fn}: TargetPlatform.weights_group_size={size} is not available with "
            "mct_compat=True (MCT 2.6.1 has per-tensor and per-channel weights only)"
        )
    for k in grouped:
        w = np.shape(prep.params[k]["weight"])
        inputs = int(np.prod(w[1:]))
        if inputs % size:
            raise ValueError(
                f"{st.fn}: TargetPlatform.weights_group_size={size} does not divide the input "
                f"size {inputs} of layer {k!r} (weight shape {w})"
            )
        method = prep.plan.kernel(k).error_method
        if method in (ErrorMethod.KL, AutoErrorMethod.AUTO):
            raise ValueError(
                f"{st.fn}: layer {k!r}: weights_error_method "
                f"{method.value!r} has no per-group mode (KL's histograms "
                "need more values than a group holds; AUTO tries KL); choose mse, mae, lp, "
                "hmse or noclipping"
            )
    return out


class KernelSearches:
    """The kernel searches of one PTQ call; those that need no Hessian scores start at once in
    a thread. Use as a context manager: the thread pool is shut down on exit, error or not.

    Attributes:
      methods_of: ``{kernel: candidate methods}`` (one, or AUTO's).
      auto: the AUTO kernels; auto_methods: AUTO's candidates (empty without AUTO).
      scored: the kernels that need Hessian scores (HMSE among their methods).
      need_scores: whether any does.
    """

    def __init__(
        self, prep: Prepared, st: Settings, clock: StageClock, mesh: Mesh | None = None
    ) -> None:
        self._prep, self._st, self._clock, self._mesh = prep, st, clock, mesh
        self.settings = st
        self._main = threading.get_ident()
        names = prep.kernel_names
        plan = prep.plan
        auto = tuple(k for k in names if plan.kernel(k).error_method is AutoErrorMethod.AUTO)
        self.auto = auto
        self.auto_methods = candidate_methods("weights", hessian=True) if auto else ()
        self.methods_of = {
            k: self.auto_methods if k in auto else _single(plan.kernel(k).error_method)
            for k in names
        }
        self.scored = tuple(k for k in names if ErrorMethod.HMSE in self.methods_of[k])
        self.need_scores = bool(self.scored)
        self.group_of = kernel_groups(prep, st)
        self.jobs = kernel_jobs(names, self.methods_of, plan, self.group_of)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._early: dict[KernelJob, Future] = {
            j: self._pool.submit(self.search, j)
            for j in self.jobs
            if j.method is not ErrorMethod.HMSE
        }

    def __enter__(self) -> KernelSearches:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def search(self, job: KernelJob, hessians=None) -> list[QParams]:
        """The parameters of ``job``'s kernels (one compiled batch search)."""
        c0 = compile_seconds()
        try:
            return self._search(job, hessians)
        finally:
            if threading.get_ident() != self._main:  # the early searches' own thread
                self._clock.add_compile("weights", compile_seconds() - c0)

    def _search(self, job: KernelJob, hessians) -> list[QParams]:
        prep, qc = self._prep, self._st.qc
        axis = dict(prep.plan.kernels)
        return weights_qparams_batch(
            [prep.params[k]["weight"] for k in job.names],
            n_bits=job.n_bits,
            method=job.qmethod,
            error_method=job.method,
            per_channel=job.per_channel,
            channel_axis=[axis[k] for k in job.names],
            p=qc.l_p_value,
            hessians=None if hessians is None else [hessians[k] for k in job.names],
            mct_compat=qc.mct_compat,
            min_threshold=qc.min_threshold,
            return_errors=job.return_errors,
            mesh=self._mesh,
            group_size=job.group_size,
            # One program per model anyway (every group in one compiled call): padding to
            # shared buckets would only add work (measured 20 % on resnet18's kernels).
            _exact_shapes=True,
        )

    def results(self, hessians=None) -> dict[tuple[str, ErrorMethod], QParams]:
        """``{(kernel, method): QParams}`` for every kernel's candidate methods (waits for the
        early searches; ``hessians``: ``{kernel: scores}`` of the ``scored`` kernels)."""
        out = {}
        for j in self.jobs:
            qps = self._early[j].result() if j in self._early else self.search(j, hessians)
            out.update({(k, j.method): qp for k, qp in zip(j.names, qps, strict=True)})
        return out


def select_kernels(
    searches: KernelSearches,
    prep: Prepared,
    retained: Retained,
    clock: StageClock,
    *,
    progress: bool = False,
    data: CalibrationData | None = None,
) -> KernelChoice:
    """The kernel pass: Hessian scores where needed, then every candidate method's search.

    Needs the calibration samples ``retained`` (Hessian scores) from the statistics pass;
    ``data`` is passed over again for layer-wise scores (``weights_hessian="layer"``).
    """
    hessians = None
    names = prep.kernel_names
    if searches.need_scores:
        from .kernel_scores import kernel_scores

        st = searches.settings
        hessians = kernel_scores(
            prep,
            searches.scored,
            retained,
            estimator=st.qc.weights_hessian,
            data=data,
            progress=progress,
            fn=st.fn,
        )
        clock.lap("hessian")
    res = searches.results(hessians)
    first = [searches.methods_of[k][0] for k in names]  # AUTO starts from MSE
    return KernelChoice(
        [res[(k, m)] for k, m in zip(names, first, strict=True)],
        [m.value for m in first],
        [[res[(k, m)] for k in searches.auto] for m in searches.auto_methods],
        searches.auto_methods,
        searches.auto,
    )


def act_jobs(
    values: list[str], methods_of: dict[str, tuple[ErrorMethod, ...]], plan: Plan
) -> dict[tuple[ErrorMethod, int, QuantizationMethod], list[str]]:
    """The activation batch searches: ``{(method, bits, quantization method): values}``."""
    groups: dict[tuple[ErrorMethod, int, QuantizationMethod], list[str]] = {}
    for v in values:
        cfg = plan.act(v)
        for m in methods_of[v]:
            groups.setdefault((m, cfg.search_n_bits, cfg.method), []).append(v)
    return groups


def select_activations(
    prep: Prepared, stats: Statistics, st: Settings, mesh: Mesh | None = None
) -> ActChoice:
    """The activation pass: every searched value's range from its histogram, one compiled
    batch search per candidate method and grid (split over ``mesh``'s devices); bounded ops
    take their op's range."""
    qc = st.qc
    searched, plan = prep.searched, prep.plan
    auto = tuple(v for v in searched if plan.act(v).error_method is AutoErrorMethod.AUTO)
    auto_methods = candidate_methods("activation") if auto else ()
    methods_of = {
        v: auto_methods if v in auto else _single(plan.act(v).error_method) for v in searched
    }
    found: dict[tuple[str, ErrorMethod], ActQuant] = {}
    for (m, n_bits, qmethod), values in act_jobs(searched, methods_of, plan).items():
        batch_qp = activation_qparams_batch(
            np.stack([stats.histograms[v][0] for v in values]),
            np.stack([stats.histograms[v][1] for v in values]),
            n_bits=n_bits,
            method=qmethod,
            error_method=m,
            p=qc.l_p_value,
            mct_compat=qc.mct_compat,
            min_threshold=qc.min_threshold,
            z_threshold=qc.z_threshold,
            return_errors=any(v in auto for v in values),
            mesh=mesh,
        )
        qp = jax.device_get(batch_qp)
        found.update({(v, m): ActQuant(qp, i, m.value) for i, v in enumerate(values)})
    quant = {v: found[(v, methods_of[v][0])] for v in searched}
    for v in prep.plan.activations:
        op = prep.op_of(v)
        if op in BOUNDED_OPS:
            quant[v] = ActQuant(
                _bounded_qparams(op, plan.act(v).method, qc.min_threshold), 0, "minmax"
            )
    cands = [[found[(v, m)] for v in auto] for m in auto_methods]
    return ActChoice(quant, searched, cands, auto_methods, auto)


def _single(method: ErrorMethod | AutoErrorMethod) -> tuple[ErrorMethod, ...]:
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
