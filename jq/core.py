"""MCT-style configuration namespace: ``jq.core`` mirrors ``mct.core``.

Examples:
    >>> import jq.core
    >>> quant_config = jq.core.QuantizationConfig(
    ...     activation_error_method=jq.core.QuantizationErrorMethod.NOCLIPPING)
    >>> core_config = jq.core.CoreConfig(quantization_config=quant_config)
    >>> core_config.quantization_config.activation_error_method.value
    'noclipping'
"""

from ._src.ptq.config import CoreConfig as CoreConfig
from ._src.ptq.config import QuantizationConfig as QuantizationConfig
from ._src.ptq.config import TargetPlatform as TargetPlatform
from ._src.ptq.steering import NodeOverride as NodeOverride
from ._src.report.quant_info import LayerInfo as LayerInfo
from ._src.report.quant_info import QuantizationInfo as QuantizationInfo
from ._src.select.enums import QuantizationErrorMethod as QuantizationErrorMethod
from ._src.select.enums import QuantizationMethod as QuantizationMethod

__all__ = [
    "CoreConfig",
    "LayerInfo",
    "NodeOverride",
    "QuantizationConfig",
    "QuantizationErrorMethod",
    "QuantizationInfo",
    "QuantizationMethod",
    "TargetPlatform",
]
