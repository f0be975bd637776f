"""The op vocabulary of jq graphs: one pure JAX function per op, in a table.

Every op is called as ``fn(params, *inputs, **attrs)``: ``params`` is the node's entry of the
params pytree (a mapping, empty for ops without params), ``inputs`` are arrays, ``attrs`` the
node's static attributes. Layouts are PyTorch's (data channels-first). Ops broadcast their
operands explicitly, so they run under ``jax_numpy_rank_promotion="raise"``.

Each module registers its ops when it is imported, and importing this package imports them
all, so the table is complete once ``jq._src.graph.ops`` is imported. By family (attrs in brackets;
``params`` in braces):

- ``registry``: ``register_op``, ``get_op``, ``registered_ops``.
- ``layers``: ``constant`` {value}; ``linear`` {weight (out, in), bias?}; ``matmul`` (a, b),
  ``torch.matmul`` semantics; ``conv`` [stride, padding ((lo, hi) per spatial dim), dilation,
  groups] {weight, bias?}: N-d; ``conv_transpose`` [stride, padding, output_padding, dilation,
  groups] {weight, bias?}; ``embedding`` (indices) {weight}; ``embedding_bag``.
- ``normalization``: ``batch_norm`` [eps] {weight?, bias?, running_mean, running_var} (the
  inference form); ``layer_norm`` [normalized_shape, eps] {weight?, bias?}; ``group_norm``
  [num_groups, eps].
- ``activations``: ``relu``, ``relu6``, ``hardtanh`` [min_val, max_val], ``leaky_relu``
  [negative_slope], ``gelu`` [approximate: "none" | "tanh"], ``silu``, ``hardswish``,
  ``hardsigmoid``, ``sigmoid``, ``tanh``, ``softmax`` [axis], ``log_softmax`` [axis], ``elu``
  [alpha, scale, input_scale], ``softplus`` [beta, threshold], ``mish``.
- ``pooling``: ``max_pool`` [kernel_size, stride, padding, dilation, ceil_mode], ``avg_pool``
  [kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override],
  ``adaptive_avg_pool`` [output_size]; ``reduce_window`` [computation: "max" | "sum", window,
  strides, padding, base_dilation, window_dilation]: pooling on any layout.
- ``elementwise``: binary ops take two tensors (broadcast), or one tensor and [scalar,
  reverse] (``reverse=True`` puts the scalar on the left: ``scalar - x``): ``add``, ``sub``,
  ``mul``, ``div``, ``atan2``, ``fmod``, ``floor_divide``, ``bitwise_and`` / ``_or`` /
  ``_xor``, ``fmax``, ``fmin``, ``hypot``, ``maximum``, ``minimum``, ``pow``, ``rem``, ``eq``,
  ``ne``, ``lt``, ``le``, ``gt``, ``ge``, ``and``, ``or``, ``xor``; unary: ``tan``, ``asin``,
  ``acos``, ``atan``, ``sinh``, ``cosh``, ``asinh``, ``acosh``, ``atanh``, ``trunc``,
  ``log2``, ``log10``, ``neg``, ``exp``, ``log``, ``log1p``, ``expm1``, ``erf``, ``erfc``,
  ``rsqrt``, ``sqrt``, ``abs``, ``sign``, ``floor``, ``ceil``, ``round``, ``square``, ``sin``,
  ``cos``, ``not``, ``is_finite``, ``integer_pow`` [y].
- ``reductions``: ``mean`` [axis, keepdims], ``reduce_sum`` / ``_max`` / ``_min`` / ``_prod``
  [axes], ``argmax`` / ``argmin`` [axis, index_dtype], ``cumsum``, ``cumprod``, ``sort``,
  ``topk``.
- ``shapes``: ``cat`` [axis], ``reshape`` [shape], ``permute`` [dims], ``expand`` [shape],
  ``slice`` [axis, start, stop, step], ``select`` [axis, index], ``cast`` [dtype], ``pad``,
  ``mode_pad``, ``pad_nd`` [config, value], ``slice_nd`` [start, limit, strides],
  ``dynamic_slice`` (x, *indices) [sizes], ``roll``, ``flip``, ``tile``, ``diagonal``,
  ``full_like``, ``arange``.
- ``indexing``: ``where``, ``select_n`` (which, *cases), ``index``, ``gather``, ``scatter``,
  ``index_put``, ``masked_scatter``.
- ``resampling``: ``resize``, ``grid_sample``, ``col2im``.
- ``attention``: ``scaled_dot_product_attention`` (q, k, v, mask?) [is_causal, scale],
  ``masked_softmax`` (x, mask) [axis, fill], ``einsum`` [equation] (*operands),
  ``dot_general`` (a, b) [dimension_numbers].
- ``quantization``: ``fake_quant`` {scale, q_min, q_max}: quantize-dequantize as a deployed
  quantizer computes it, ``clip(round(x * (1/scale)), q_min, q_max) * scale``
  (``torch.fake_quantize_*``'s arithmetic; ``jq._src.select.quantizers.affine_grid`` gives the
  three values of a threshold or range); ``ptq_gate`` {scale, q_min, q_max, on}: the PTQ
  probe's switchable quantizer, never exported.
- ``hooks``: the PTQ passes' own hooks (``ptq_perturb``, ``ptq_hessian_probe``,
  ``ptq_hessian_conv``), never exported.

Add an op with ``@register_op("name")``; the name must be new unless ``override=True``.
"""

from . import activations as activations
from . import attention as attention
from . import elementwise as elementwise
from . import hooks as hooks
from . import indexing as indexing
from . import layers as layers
from . import normalization as normalization
from . import pooling as pooling
from . import quantization as quantization
from . import reductions as reductions
from . import resampling as resampling
from . import shapes as shapes
from .pooling import avg_pool_divisor as avg_pool_divisor
from .quantization import fake_quant as fake_quant
from .registry import _OPS as _OPS
from .registry import OpFn as OpFn
from .registry import Params as Params
from .registry import get_op as get_op
from .registry import register_op as register_op
from .registry import registered_ops as registered_ops
from .resampling import resize_matrix as resize_matrix
