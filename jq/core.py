"""MCT-style configuration namespace: ``jq.core`` mirrors ``mct.core``.

Example::

    quant_config = jq.core.QuantizationConfig(
        activation_error_method=jq.core.QuantizationErrorMethod.NOCLIPPING)
    core_config = jq.core.CoreConfig(quantization_config=quant_config)
"""

from ._config import CoreConfig as CoreConfig
from ._config import QuantizationConfig as QuantizationConfig
from ._config import QuantizationErrorMethod as QuantizationErrorMethod
from ._config import TargetPlatform as TargetPlatform
from ._enums import QuantizationMethod as QuantizationMethod
from ._quant_info import LayerInfo as LayerInfo
from ._quant_info import QuantizationInfo as QuantizationInfo

__all__ = [
    "CoreConfig",
    "LayerInfo",
    "QuantizationConfig",
    "QuantizationErrorMethod",
    "QuantizationInfo",
    "QuantizationMethod",
    "TargetPlatform",
]
