"""The HMSE kernels' Hessian scores in a PTQ call, by the configured estimator.

``QuantizationConfig.weights_hessian`` picks it: ``"model"`` runs the whole-model Hutchinson
estimator (``hessian.py``) on the retained calibration samples; ``"layer"`` accumulates each
kernel's inputs' second moments (``layer_hessian.py``) over a pass of the calibration data
(or, without the data, over the retained samples).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from .data import CalibrationData, Retained
from .layer_hessian import WeightsHessian, accumulate_scores
from .prepare import Prepared


def kernel_scores(
    prep: Prepared,
    scored: Sequence[str],
    retained: Retained,
    *,
    estimator: WeightsHessian,
    data: CalibrationData | None = None,
    progress: bool = False,
    fn: str = "jq.ptq",
) -> dict[str, jax.Array]:
    """``{kernel: per-element scores}`` (each the kernel's shape) for the ``scored`` kernels.

    Args:
      prep: the prepared float model (its graphs for any input shapes, folded params).
      scored: the kernels that need scores.
      retained: the statistics pass's retained samples (``(1, ...)`` each, per input).
      estimator: :class:`WeightsHessian` ``MODEL`` or ``LAYER``.
      data: the calibration data (``LAYER``: a second pass over it); ``None``: the samples.
      progress: progress bars.
      fn: the entry point's name, for errors.
    """
    names = list(scored)
    if estimator is WeightsHessian.LAYER:
        if data is not None:
            batches = data.batches(progress=progress, desc="jq layer Hessian")
        else:
            batches = iter([tuple(np.concatenate(s) for s in retained.samples)])
        return accumulate_scores(prep.graphs, prep.params, batches, names, fn=fn)
    from .hessian import weight_scores

    shapes = tuple((1,) + tuple(s[1:]) for s in prep.graphs.first_shapes)
    xs = [np.stack(s) for s in retained.samples]  # (S, 1, ...): S samples of batch 1
    return weight_scores(prep.graphs(shapes), prep.params, xs, names, progress=progress)
