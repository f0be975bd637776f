"""The checked configuration of one PTQ call (the pipeline's first pass, ``settings``).

:func:`settings` checks the core config and the target platform once; every later pass reads
the :class:`Settings` record it returns.
"""

from __future__ import annotations

from typing import NamedTuple

from ..select.enums import AutoErrorMethod, ErrorMethod
from .config import CoreConfig, QuantizationConfig, TargetPlatform
from .front_door import check_core_config
from .steering import Rule


class Settings(NamedTuple):
    """The checked configuration of one PTQ call.

    Attributes:
      qc: the quantization config (error methods, bias correction, shift-negative, ...).
      tp: the target platform (bit widths, quantization methods, per-channel kernels).
      fn: the entry point's name, used in error messages.
      progress: show tqdm progress bars.
      rules: the per-layer steering rules (``CoreConfig.rules``); placement applies them
        (each quantizer's settings are ``Prepared.plan``'s).
    """

    qc: QuantizationConfig
    tp: TargetPlatform
    fn: str
    progress: bool
    rules: tuple[Rule, ...] = ()

    @property
    def compat(self) -> bool:
        """MCT 2.6.1's numbers exactly (``mct_compat``)."""
        return self.qc.mct_compat

    def _methods(self, kind: str) -> set:
        """Every error method ``kind``'s quantizers may get before placement: the global one
        and every rule's (``Plan`` has the methods each quantizer gets)."""
        field = f"{kind}_error_method"
        found = {getattr(self.qc, field)}
        return found | {getattr(r.override, field) for r in self.rules} - {None}

    @property
    def act_auto(self) -> bool:
        return AutoErrorMethod.AUTO in self._methods("activation")

    @property
    def w_auto(self) -> bool:
        return AutoErrorMethod.AUTO in self._methods("weights")

    @property
    def w_hmse(self) -> bool:
        """Whether some kernel's error method is HMSE (not counting AUTO's candidate)."""
        return ErrorMethod.HMSE in self._methods("weights")

    @property
    def needs_scores(self) -> bool:
        """Whether kernels need Hessian scores (HMSE, or AUTO's HMSE candidate)."""
        return self.w_hmse or self.w_auto


def settings(
    core_config: CoreConfig | None, target_platform: TargetPlatform | None, fn: str
) -> Settings:
    """Check ``core_config`` and ``target_platform`` (``None``: MCT's defaults).

    Raises:
      TypeError: either is of the wrong type.
    """
    core_config = check_core_config(core_config, fn)
    tp = TargetPlatform() if target_platform is None else target_platform
    if not isinstance(tp, TargetPlatform):
        raise TypeError(
            f"{fn}: target_platform must be None or a jq.core.TargetPlatform, got "
            f"{type(tp).__name__}"
        )
    return Settings(
        core_config.quantization_config, tp, fn, core_config.progress, core_config.rules
    )
