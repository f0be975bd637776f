"""Every docstring example of ``jq`` and ``jq_torch`` runs (``doctest``), one test per module.

The examples run in this process, under the suite's settings (``tests/conftest.py``: its own
compilation-cache folder, strict rank promotion). ``jq_torch``'s need torch.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest


def _modules(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]
    return sorted(n for n in names if not n.endswith("__main__"))


MODULES = _modules("jq") + (
    _modules("jq_torch") if importlib.util.find_spec("torch") is not None else []
)


def test_every_module_is_found():
    assert {"jq", "jq.ptq", "jq._src.ptq.pipeline", "jq._src.select.weights"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    out: list[str] = []
    failed = attempted = 0
    for t in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        r = runner.run(t, out=out.append)
        failed, attempted = failed + r.failed, attempted + r.attempted
    assert not failed, f"{failed} of {attempted} examples in {name} failed:\n" + "".join(out)
