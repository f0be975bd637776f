"""jq: JAX-native threshold selection for post-training quantization.

The import name is ``jq``; the distribution is ``jq-quant`` (``jq`` on PyPI is a JSON tool).
"""

from . import core as core
from . import ptq as ptq
from ._activations import activation_qparams as activation_qparams
from ._activations import activation_qparams_batch as activation_qparams_batch
from ._apply import apply as apply
from ._cache import clear_compilation_cache as clear_compilation_cache
from ._enums import ErrorMethod as ErrorMethod
from ._enums import QuantizationErrorMethod as QuantizationErrorMethod
from ._enums import QuantizationMethod as QuantizationMethod
from ._fake_quant import fake_quant as fake_quant
from ._graph import Graph as Graph
from ._graph import Node as Node
from ._graph import summary as summary
from ._histogram import HistogramState as HistogramState
from ._histogram import MCTHistogramState as MCTHistogramState
from ._histogram import histogram as histogram
from ._histogram import histogram_finalize as histogram_finalize
from ._histogram import histogram_init as histogram_init
from ._histogram import histogram_merge as histogram_merge
from ._histogram import histogram_update as histogram_update
from ._ops import register_op as register_op
from ._ops import registered_ops as registered_ops
from ._quantizers import MIN_THRESHOLD as MIN_THRESHOLD
from ._report import report as report
from ._types import QParams as QParams
from ._weights import weights_qparams as weights_qparams
from ._weights import weights_qparams_batch as weights_qparams_batch

__version__ = "0.1.0"
