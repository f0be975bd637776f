"""The one supply of unique names: graph nodes (``jq.from_jax``, ``jq_torch.from_torch``) and
ONNX values (the exporter) are named ``base``, then ``base_1``, ``base_2``, ..."""

from __future__ import annotations

from collections.abc import Iterable


class Names:
    """Unique names, one supply per graph being built.

    Args:
      taken: names already in use (the graph's inputs).

    Example:
      >>> names = Names({"x"})
      >>> names.new("x"), names.new("x"), names.new("conv")
      ('x_1', 'x_2', 'conv')
    """

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._taken = set(taken)

    def new(self, base: str) -> str:
        """``base`` if unused, else ``base_<i>`` for the smallest unused ``i`` (``"node"`` for
        an empty ``base``); the name is taken from then on."""
        base = base or "node"
        name, i = base, 0
        while name in self._taken:
            i += 1
            name = f"{base}_{i}"
        self._taken.add(name)
        return name
