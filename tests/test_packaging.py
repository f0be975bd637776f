"""pyproject.toml lists every package a wheel must hold: an editable install (``make``) finds
sub-packages on disk, so a package missing from the list shows only in a real install."""

import pathlib

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (the project supports 3.10)

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for name, folder in tool["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join((name, *rel)))
    assert found, "no package found under package-dir"
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert listed - found == set(), f"listed but not on disk: {sorted(listed - found)}"
