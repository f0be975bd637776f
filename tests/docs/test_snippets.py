"""Every ```python block of README.md and docs/**/*.md runs, page by page.

A page's python blocks run in order in one fresh namespace (what a reader pastes into one
session), in this process and under the suite's settings (``tests/conftest.py``, warnings as
errors), with a temporary working folder. Blocks fenced as ``text``, ``bash``, ``console``,
``yaml`` or ``toml`` are output or shell and are not run; a fence without a language is an error,
so no example escapes the run by accident. A page whose example needs an optional package that
is not installed (torch, flax, onnx, MCT, ...) is skipped, naming it.
"""

from __future__ import annotations

import pathlib
import re
from typing import NamedTuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN = {"python", "py"}
NOT_RUN = {"text", "bash", "console", "yaml", "toml"}
# Packages outside jq's core dependencies that a page's examples may import.
OPTIONAL = {
    "torch",
    "transformers",
    "compressed_tensors",
    "safetensors",
    "torchvision",
    "flax",
    "optax",
    "equinox",
    "onnx",
    "onnxruntime",
    "mct_quantizers",
    "onnxruntime_extensions",
    "model_compression_toolkit",
    "matplotlib",
}
_FENCE = re.compile(r"^(\s*)(`{3,})(.*)$")


class Block(NamedTuple):
    """One fenced code block: its language, the 1-based line of its first code line, its text."""

    lang: str
    line: int
    code: str


def blocks(text: str, page: str = "<page>") -> list[Block]:
    """The fenced code blocks of a markdown text, in order.

    Raises:
      ValueError: a fence with no language, a language that is neither run nor known as
        output/shell, or a fence left open (each names the page and line).
    """
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks, info = m.groups()
        lang = info.strip().split(" ")[0].lower() if info.strip() else ""
        if lang not in RUN | NOT_RUN:
            raise ValueError(
                f"{page}:{i + 1}: code fence language {lang!r} is neither run "
                f"({sorted(RUN)}) nor output/shell ({sorted(NOT_RUN)})"
            )
        start, i = i + 1, i + 1
        while i < len(lines) and not lines[i].strip().startswith(ticks):
            i += 1
        if i == len(lines):
            raise ValueError(f"{page}:{start}: code fence opened here is never closed")
        body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[start:i]]
        out.append(Block(lang, start + 1, "\n".join(body) + "\n"))
        i += 1
    return out


def _pages() -> list[pathlib.Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


PAGES = [p.relative_to(ROOT).as_posix() for p in _pages()]
RUNNABLE = [p for p in PAGES if any(b.lang in RUN for b in blocks((ROOT / p).read_text(), p))]


def test_blocks_parses_languages_and_lines():
    text = "# t\n```python\nx = 1\n```\n\n```text\nout\n```\n  ```py\n  y = x\n  ```\n"
    assert blocks(text) == [
        Block("python", 3, "x = 1\n"),
        Block("text", 7, "out\n"),
        Block("py", 10, "y = x\n"),
    ]
    with pytest.raises(ValueError, match="<page>:1: code fence language ''"):
        blocks("```\nx\n```\n")
    with pytest.raises(ValueError, match="never closed"):
        blocks("```python\nx = 1\n")


def test_pages_found():
    assert {"README.md", "docs/index.md", "docs/benchmarks.md"} <= set(PAGES)


def test_the_reference_lists_every_public_name_of_jq():
    # docs/reference/jq.md names jq's members: its re-exports have no __all__ to render from.
    import types

    import jq

    listed = set(re.findall(r"^ +- (\w+)$", (ROOT / "docs/reference/jq.md").read_text(), re.M))
    public = {
        n
        for n, v in vars(jq).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert public <= listed, f"add to docs/reference/jq.md: {sorted(public - listed)}"


def test_readme_is_short():
    assert len((ROOT / "README.md").read_bytes()) <= 12 * 1024


def test_every_page_with_code_runs_some():
    # The README's quickstart and the guides hold examples; only reference pages may have none.
    assert {"README.md", "docs/getting-started.md", "docs/guides/functional-api.md"} <= set(
        RUNNABLE
    )


# Two guides run whole PTQ calls per error method / per Flax model (40-50 s each on 2 cores):
# `make test-all` runs them; every other page's examples run in `make test`.
HEAVY_PAGES = {"docs/guides/error-methods.md", "docs/guides/flax-jax.md"}


@pytest.mark.parametrize(
    "page", [pytest.param(p, marks=pytest.mark.slow) if p in HEAVY_PAGES else p for p in RUNNABLE]
)
def test_page_examples_run(page, tmp_path, monkeypatch):
    todo = [b for b in blocks((ROOT / page).read_text(), page) if b.lang in RUN]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for b in todo:
        # Padded so that a traceback's line numbers are the page's.
        code = compile("\n" * (b.line - 1) + b.code, str(ROOT / page), "exec")
        try:
            exec(code, namespace)
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] in OPTIONAL:
                pytest.skip(f"{page}:{b.line} needs {e.name}, which is not installed")
            raise
