"""Every steering rule of a ``CoreConfig``, parsed and checked when the config is made:
MCT's manual bit widths, then its network editor, then jq's ``overrides`` mapping (the order
they apply in)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...select.enums import ErrorMethod
from .mct import bit_width_rules, editor_rules
from .overrides import node_override
from .rules import Rule, Selector


def parse_rules(
    *,
    overrides: Any = None,
    debug_config: Any = None,
    bit_width_config: Any = None,
    activation_error_method: Any = None,
) -> tuple[Rule, ...]:
    """Every steering rule of a ``CoreConfig``, in the order they apply (bit widths, network
    editor, overrides).

    Args:
      overrides: jq's mapping ``{pattern: {field: value}}`` or ``None``.
      debug_config: MCT's ``DebugConfig`` or ``None``.
      bit_width_config: MCT's ``BitWidthConfig`` or ``None``.
      activation_error_method: the global activation error method (a per-node HMSE is
        refused unless it is HMSE too).

    Raises:
      TypeError / ValueError: anything jq cannot apply, naming the entry and the problem.
    """
    rules = bit_width_rules(bit_width_config) + editor_rules(debug_config)
    rules += _override_rules(overrides)
    for r in rules:
        hmse = r.override.activation_error_method is ErrorMethod.HMSE
        if hmse and activation_error_method is not ErrorMethod.HMSE:
            raise ValueError(
                f"CoreConfig: {r.source} sets activation_error_method=HMSE on single nodes; "
                "activation HMSE weights the statistics of every value with Hessian scores, so "
                "set it in QuantizationConfig(activation_error_method=HMSE) for all of them"
            )
    return rules


def _override_rules(overrides: Any) -> tuple[Rule, ...]:
    if overrides is None:
        return ()
    if not isinstance(overrides, Mapping):
        raise TypeError(
            "CoreConfig: overrides must be a mapping {node-name pattern: {field: value}}, got "
            f"{type(overrides).__name__}"
        )
    rules = []
    for pattern, fields in overrides.items():
        where = f"CoreConfig: overrides[{pattern!r}]"
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"{where}: a pattern must be a non-empty str (a node name or glob)")
        o = node_override(fields, where)
        rules.append(Rule(Selector("glob", pattern), o, f"overrides[{pattern!r}]"))
    return tuple(rules)
