"""jq_flax: Flax models (NNX and Linen) into jq's graph form, and quantized graphs back.

- ``from_nnx(model, *x)`` and ``from_linen(module, variables, *x)``: convert with
  ``jq.from_jax`` (node names are the module paths; kernels in jq's layout).
- ``flax_post_training_quantization``: MCT's PTQ call on a Flax model (it is
  ``jq.ptq.flax_post_training_quantization``, which checks the call and runs ``_ptq``); an
  NNX model comes back as a :class:`QuantizedModule`, a Linen one as a
  :class:`LinenQuantized` (apply and variables).

flax is imported here and only here; ``import jq`` never imports it.
"""

from jq.ptq import flax_post_training_quantization as flax_post_training_quantization

from ._convert import from_linen as from_linen
from ._convert import from_nnx as from_nnx
from ._convert import inference_view as inference_view
from ._module import LinenQuantized as LinenQuantized
from ._module import QuantizedModule as QuantizedModule
from ._module import QuantizedParams as QuantizedParams

__all__ = [
    "LinenQuantized",
    "QuantizedModule",
    "QuantizedParams",
    "flax_post_training_quantization",
    "from_linen",
    "from_nnx",
    "inference_view",
]
