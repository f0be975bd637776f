"""``QuantizationInfo``: what PTQ chose, per layer, and how faithful the result is; JSON I/O."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..runtime.paths import check_writable, write_text


def _floats(v: Any) -> list[float] | float | None:
    if v is None:
        return None
    a = np.asarray(v, np.float64)
    return float(a) if a.ndim == 0 else [float(x) for x in a.ravel()]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerInfo:
    """Quantization parameters of one quantized tensor.

    Attributes:
      name: node name in the quantized graph (the layer for weights, the value for
        activations).
      kind: ``"weights"`` (a kernel) or ``"activation"`` (a value's quantizer).
      op: op of the node producing the tensor (``"input"`` for graph inputs).
      n_bits: bit width.
      method: ``"power_of_two"``, ``"symmetric"`` or ``"uniform"``.
      error_method: error method used (``"mse"``, ..., ``"minmax"`` for bounded outputs).
      signed: whether the grid is signed.
      threshold: float (per tensor) or one per channel (per group: ``out x G`` values, channel
        by channel, with ``group_size``); ``None`` for uniform.
      range_min, range_max: uniform range (float or per channel/group); ``None`` otherwise.
      channel_axis: axis of per-channel parameters (weights), else ``None``.
      group_size: weights with per-group parameters: the inputs per group (``G =
        inputs / group_size`` per channel); ``None`` otherwise.
      sqnr_db: signal-to-quantization-noise ratio of the layer's output in the quantized model
        against the float model, on the calibration data (``10 log10(sum x^2 / sum (x-xq)^2)``);
        ``inf`` if identical.
      analysis: with the error method ``"auto"``: every candidate method's parameters, layer
        output SQNR and normalised error curve, the choice, and (activations) the histogram,
        as built by ``jq._src.ptq.auto_analysis.layer_analysis``; what ``jq.report`` draws. ``None``
        otherwise.
    """

    name: str
    kind: str
    op: str
    n_bits: int
    method: str
    error_method: str
    signed: bool
    threshold: Any = None
    range_min: Any = None
    range_max: Any = None
    channel_axis: int | None = None
    group_size: int | None = None
    sqnr_db: float | None = None
    analysis: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("threshold", "range_min", "range_max"):
            d[k] = _floats(d[k])
        return d


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantizationInfo:
    """Result summary of :func:`jq.ptq.pytorch_post_training_quantization` (second value).

    Attributes:
      layers: one :class:`LayerInfo` per quantized tensor (weights first, in graph order, then
        activations in graph order).
      output_sqnr_db: SQNR of the model outputs (quantized vs float), on the calibration data.
      config: the settings used (error methods, bit widths, ``mct_compat``, ...), JSON-able.
      timings: seconds per pipeline stage (``prepare``, ``statistics``, ``hessian``,
        ``weights``, ``activations``, ``auto``, ``build``, ``auto_check``, ``sqnr``, ``total``),
        each with ``<stage>.compile``: the part spent compiling JAX programs (tracing, lowering,
        XLA, or loading them from the persistent cache); the rest is run time. The kernel
        searches start in a thread during ``statistics``; their compile time counts under
        ``weights.compile``. A front end adds its own stages: the torch call has ``export``
        (``torch.export`` and conversion to jq's graph) and ``to_torch``; its ``total`` is the
        whole call, and ``pipeline`` that of ``quantize_graph`` (``total.compile`` stays the
        pipeline's: torch.export's own compilation is not measured).
      notes: what was applied or skipped (e.g. bias correction on N layers).

    Example:
      A hand-built info (a PTQ run returns one as its second value):

      >>> import os, tempfile
      >>> import jq.core
      >>> conv1 = jq.core.LayerInfo(name="conv1", kind="weights", op="conv", n_bits=8,
      ...     method="symmetric", error_method="mse", signed=True, threshold=[0.5, 0.25],
      ...     channel_axis=0, sqnr_db=31.5)
      >>> info = jq.core.QuantizationInfo(layers=(conv1,), output_sqnr_db=30.0)
      >>> with tempfile.TemporaryDirectory() as d:
      ...     info.save(os.path.join(d, "info.json"))
      ...     same = jq.core.QuantizationInfo.load(os.path.join(d, "info.json"))
      >>> same.layer("conv1", "weights").threshold
      [0.5, 0.25]
      >>> print(same.table())  # doctest: +NORMALIZE_WHITESPACE
      name   kind  bits  method     error  signed  thr/range  SQNR dB
      conv1  wei   8     symmetric  mse    s       0.25..0.5  31.5
    """

    layers: tuple[LayerInfo, ...] = ()
    output_sqnr_db: float | None = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def layer(self, name: str, kind: str = "activation") -> LayerInfo:
        """The entry of ``name`` (``kind`` ``"weights"`` or ``"activation"``)."""
        for li in self.layers:
            if li.name == name and li.kind == kind:
                return li
        raise KeyError(f"QuantizationInfo: no {kind} entry named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [li.to_dict() for li in self.layers],
            "output_sqnr_db": self.output_sqnr_db,
            "config": dict(self.config),
            "timings": dict(self.timings),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantizationInfo:
        if not isinstance(d, dict) or "layers" not in d:
            raise ValueError("QuantizationInfo.from_dict: expected a dict with a 'layers' list")
        return cls(
            layers=tuple(LayerInfo(**li) for li in d["layers"]),
            output_sqnr_db=d.get("output_sqnr_db"),
            config=dict(d.get("config", {})),
            timings=dict(d.get("timings", {})),
            notes=tuple(d.get("notes", ())),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the info as JSON (``inf`` SQNR is written as ``Infinity``), whole or not at
        all.

        Raises:
          ValueError: ``path``'s folder does not exist or is not writable (named; jq creates
            no folders, as the exporter and ``jq.report``).
        """
        path = check_writable(path, "QuantizationInfo.save", "path")
        write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> QuantizationInfo:
        """Read a file written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def table(self, kinds: Sequence[str] = ("weights", "activation")) -> str:
        """A text table: name, kind, bits, method, error method, signed, max threshold, SQNR."""
        rows = [("name", "kind", "bits", "method", "error", "signed", "thr/range", "SQNR dB")]
        for li in self.layers:
            if li.kind not in kinds:
                continue
            if li.threshold is not None:
                t = np.asarray(li.threshold)
                rng = f"{t.max():.4g}" if t.size == 1 else f"{t.min():.3g}..{t.max():.3g}"
            else:
                rng = f"[{np.min(li.range_min):.3g}, {np.max(li.range_max):.3g}]"
            sq = "" if li.sqnr_db is None else f"{li.sqnr_db:.1f}"
            rows.append(
                (
                    li.name[:40],
                    li.kind[:3],
                    str(li.n_bits),
                    li.method,
                    li.error_method,
                    "s" if li.signed else "u",
                    rng,
                    sq,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
        )
