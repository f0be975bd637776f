"""The front door of MCT's PTQ call, one for every front end.

:func:`check_call` checks the arguments that MCT's ``*_post_training_quantization`` calls share
(no resource target, a :class:`CoreConfig`, a target platform, a callable data generator)
before any model is looked at; ``quantize_graph`` checks its config with the same
:func:`check_core_config`. :func:`adapter` finds the package that runs the call for a
framework (``jq_torch``, ``jq_flax``) by its name, the way JAX finds its plugins: no import
statement of ``jq`` names an adapter, so ``import jq`` never imports torch or flax and the
adapters, which import ``jq``, close no import loop.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

from .config import CoreConfig, TargetPlatform, resolve_target_platform


class MctCall(NamedTuple):
    """The checked arguments of an MCT-style PTQ call.

    Attributes:
      representative_data_gen: the user's callable returning an iterable of batches.
      core_config: the :class:`CoreConfig`.
      platform: the target platform (:func:`resolve_target_platform` of MCT's
        ``target_platform_capabilities``).
      fn: the entry point's name, used in error messages.
    """

    representative_data_gen: Callable[[], Any]
    core_config: CoreConfig
    platform: TargetPlatform
    fn: str


def check_core_config(core_config: Any, fn: str) -> CoreConfig:
    """``core_config`` (``None``: MCT's defaults) once checked.

    Raises:
      TypeError: it is not a ``jq.core.CoreConfig`` (e.g. MCT's own).
    """
    if core_config is None:
        return CoreConfig()
    if not isinstance(core_config, CoreConfig):
        raise TypeError(
            f"{fn}: core_config must be a jq.core.CoreConfig, got "
            f"{type(core_config).__module__}.{type(core_config).__name__}"
        )
    return core_config


def check_call(
    fn: str,
    representative_data_gen: Any,
    target_resource_utilization: Any,
    core_config: Any,
    target_platform_capabilities: Any,
) -> MctCall:
    """MCT's PTQ arguments (all but the model) checked, for entry point ``fn``.

    Raises:
      NotImplementedError: a resource target (mixed precision).
      TypeError: a ``core_config`` or platform of the wrong type, or a data generator that is
        not callable.
    """
    if target_resource_utilization is not None:
        raise NotImplementedError(
            f"{fn}: target_resource_utilization (mixed precision) is not supported by jq"
        )
    core_config = check_core_config(core_config, fn)
    platform = resolve_target_platform(target_platform_capabilities, fn)
    if not callable(representative_data_gen):
        raise TypeError(
            f"{fn}: representative_data_gen must be a callable returning an iterable of "
            f"batches, got {type(representative_data_gen).__name__}"
        )
    return MctCall(representative_data_gen, core_config, platform, fn)


# The adapter package of each framework and the pip extra that installs its framework.
_ADAPTERS = {"pytorch": ("jq_torch", "torch"), "flax": ("jq_flax", "flax")}


def adapter(framework: str, module: str, fn: str) -> ModuleType:
    """Module ``module`` of ``framework``'s adapter package (``adapter("pytorch", "_ptq",
    fn)`` is ``jq_torch._ptq``), imported now.

    Raises:
      ImportError: the adapter or its framework is not importable (the message says what to
        install).
    """
    package, extra = _ADAPTERS[framework]
    try:
        return importlib.import_module(f"{package}.{module}")
    except ImportError as e:
        raise ImportError(
            f"{fn} needs {extra} and the {package} adapter (install jq-quant[{extra}], or put "
            f"adapters/ on sys.path): {e}"
        ) from e
