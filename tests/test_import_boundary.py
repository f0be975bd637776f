"""The core never reaches an adapter: importing every module of ``jq`` imports neither torch,
flax nor an adapter package, and no ``import`` statement in ``jq`` (at module level or inside a
function) names one. The MCT faces find their adapter by name when called
(``jq._src.ptq.front_door.adapter``), so ``jq_torch -> jq`` is the only direction."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import jq

_ROOT = pathlib.Path(jq.__file__).parent
_FORBIDDEN = ("torch", "flax", "jq_torch", "jq_flax", "jq_onnx")


def _names(tree: ast.AST) -> list[str]:
    """Every module an import statement of ``tree`` names."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def test_no_import_statement_in_jq_names_an_adapter_or_a_framework():
    found = {
        str(path.relative_to(_ROOT.parent)): name
        for path in sorted(_ROOT.rglob("*.py"))
        for name in _names(ast.parse(path.read_text()))
        if name.split(".")[0] in _FORBIDDEN
    }
    assert found == {}
    assert len(list(_ROOT.rglob("*.py"))) > 50  # the walk saw the package


def test_importing_every_jq_module_imports_no_adapter():
    code = (
        "import importlib, pkgutil, sys, jq\n"
        "mods = [m.name for m in pkgutil.walk_packages(jq.__path__, 'jq.')\n"
        "        if not m.name.endswith('__main__')]\n"
        "for m in mods:\n"
        "    importlib.import_module(m)\n"
        f"print(len(mods), sorted(m for m in {_FORBIDDEN!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, loaded = out.stdout.strip().split(" ", 1)
    assert int(count) > 50
    assert loaded == "[]"
