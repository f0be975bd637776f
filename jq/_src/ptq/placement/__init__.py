"""Quantizer placement: which kernels and values get a quantizer, and how each is set up.

The parts, in the order :func:`place` applies them:

- ``platform``: MCT's default target platform (imx500 v1): kernels of conv / linear layers,
  activation quantizers on float values except no-quantization ops and fused layers
  (:func:`plan_quantization`, a :class:`Placement`);
- ``policy``: jq's default-mode departure from MCT's bit widths: normalization inputs at
  ``NORM_INPUT_BITS`` bits (:func:`norm_inputs`);
- the user's steering rules, resolved by ``jq._src.ptq.steering``;
- ``plan``: :func:`place` and the :class:`Plan` record every later pass reads;
- ``masks``: after statistics, values carrying attention-mask constants lose their
  quantizer (:func:`without_masks`).
"""

from .masks import MASK_LEVEL as MASK_LEVEL
from .masks import mask_values as mask_values
from .masks import without_masks as without_masks
from .plan import ActConfig as ActConfig
from .plan import KernelConfig as KernelConfig
from .plan import Plan as Plan
from .plan import default_act_config as default_act_config
from .plan import default_kernel_config as default_kernel_config
from .plan import place as place
from .platform import BOUNDED_OPS as BOUNDED_OPS
from .platform import FUSING as FUSING
from .platform import GROUPED_OPS as GROUPED_OPS
from .platform import KERNEL_AXIS as KERNEL_AXIS
from .platform import NO_QUANT_OPS as NO_QUANT_OPS
from .platform import Placement as Placement
from .platform import kernel_group_size as kernel_group_size
from .platform import plan_quantization as plan_quantization
from .policy import NORM_INPUT_BITS as NORM_INPUT_BITS
from .policy import norm_inputs as norm_inputs
