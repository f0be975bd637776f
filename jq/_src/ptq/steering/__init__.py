"""Per-layer steering: settings for single nodes, in MCT's terms or in jq's.

Three sources, parsed (and checked) when the :class:`jq.core.CoreConfig` is made
(:func:`parse_rules`) and resolved against the graph once it is known (:func:`resolve`):

- MCT's manual bit widths: ``CoreConfig(bit_width_config=mct.core.BitWidthConfig())`` after
  ``set_manual_activation_bit_width(filters, bit_widths)`` /
  ``set_manual_weights_bit_width(filters, bit_widths, attrs)``;
- MCT's network editor: ``CoreConfig(debug_config=mct.core.DebugConfig(network_editor=[
  EditRule(filter=..., action=...)]))`` with MCT's node filters (``NodeNameFilter``,
  ``NodeNameScopeFilter``, ``NodeTypeFilter`` and their ``&``, ``|``, ``logic_not()``) and
  the actions that set error method, bit width, quantization method or per-channel thresholds,
  or switch quantization off;
- jq's mapping: ``CoreConfig(overrides={"layer1.0.conv1": {"weights_n_bits": 4},
  "layer2.*": {"activation_error_method": "kl"}})``: glob patterns (``fnmatch``, case
  sensitive) over the node names exactly as ``QuantizationInfo.layers`` and the report print
  them (the layer for a kernel, the value for an activation quantizer), mapped to
  :class:`NodeOverride` fields.

They apply in that order (MCT applies its bit widths when it builds each node's candidates and
the editor afterwards); a later rule wins field by field. A rule that matches no node, or only
nodes without the quantizer its fields set (a conv fused with its ReLU has no activation
quantizer of its own), is an error naming the closest names. MCT's objects are read by class
and attribute names: this package imports neither MCT nor torch.

The parts:

- ``overrides``: :class:`NodeOverride` (what a rule sets), its fields' parsers, the bit-width
  check;
- ``rules``: :class:`Rule` and :class:`Selector` (which nodes a rule selects), node spellings;
- ``mct``: MCT's ``BitWidthConfig`` and network-editor objects and the layer-type table of
  ``NodeTypeFilter``;
- ``parse``: :func:`parse_rules`, every rule of a ``CoreConfig`` in order;
- ``resolve``: the rules on a graph, into a :class:`Steering` record that placement applies
  (``jq._src.ptq.placement.place``, which also holds jq's own default policy).
"""

from .overrides import NodeOverride as NodeOverride
from .overrides import bit_width as bit_width
from .overrides import node_override as node_override
from .overrides import parse_error_method_or_auto as parse_error_method_or_auto
from .parse import parse_rules as parse_rules
from .resolve import Steering as Steering
from .resolve import bn_aliases as bn_aliases
from .resolve import resolve as resolve
from .rules import Rule as Rule
from .rules import Selector as Selector
from .rules import describe as describe
from .rules import spellings as spellings
