"""jq: JAX-native threshold selection for post-training quantization.

The import name is ``jq``; the distribution is ``jq-quant`` (``jq`` on PyPI is a JSON tool).
"""

from . import core as core
from . import exporter as exporter
from . import ptq as ptq
from ._src.graph.apply import apply as apply
from ._src.graph.graph import Graph as Graph
from ._src.graph.graph import Node as Node
from ._src.graph.graph import summary as summary
from ._src.graph.ops import register_op as register_op
from ._src.graph.ops import registered_ops as registered_ops
from ._src.jax_frontend.convert import from_jax as from_jax
from ._src.jax_frontend.errors import UnsupportedPrimitiveError as UnsupportedPrimitiveError
from ._src.ptq.quality import SQNR_FLOOR_DB as SQNR_FLOOR_DB
from ._src.ptq.quality import QualityWarning as QualityWarning
from ._src.report.report import report as report
from ._src.runtime.cache import clear_compilation_cache as clear_compilation_cache
from ._src.select.activations import activation_qparams as activation_qparams
from ._src.select.activations import activation_qparams_batch as activation_qparams_batch
from ._src.select.enums import ErrorMethod as ErrorMethod
from ._src.select.enums import QuantizationErrorMethod as QuantizationErrorMethod
from ._src.select.enums import QuantizationMethod as QuantizationMethod
from ._src.select.fake_quant import fake_quant as fake_quant
from ._src.select.histogram import HistogramState as HistogramState
from ._src.select.histogram import MCTHistogramState as MCTHistogramState
from ._src.select.histogram import histogram as histogram
from ._src.select.histogram import histogram_finalize as histogram_finalize
from ._src.select.histogram import histogram_init as histogram_init
from ._src.select.histogram import histogram_merge as histogram_merge
from ._src.select.histogram import histogram_update as histogram_update
from ._src.select.quantizers import MIN_THRESHOLD as MIN_THRESHOLD
from ._src.select.types import QParams as QParams
from ._src.select.weights import weights_qparams as weights_qparams
from ._src.select.weights import weights_qparams_batch as weights_qparams_batch

__version__ = "0.1.0"
