"""A griffe extension for the API reference (mkdocs.yml): jq's docstrings title their doctest
sections ``Example:`` as often as ``Examples:``, and griffe's Google parser reads only the
latter as examples (the former becomes an admonition whose ``>>>`` lines render as prose)."""

import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Read an ``Example:`` section as ``Examples:``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
