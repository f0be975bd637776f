"""benchmarks/_page.py: the benchmarks page's marked sections are replaced, dated, and only on
a clean run (the benchmarks themselves are not run here: they take minutes)."""

from __future__ import annotations

import datetime
import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("_page", ROOT / "benchmarks" / "_page.py")
assert _spec is not None and _spec.loader is not None
page = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(page)

TEXT = "# B\n\nintro\n<!-- bench:ptq -->\nold table\n<!-- /bench:ptq -->\nanalysis\n"


def test_replace_section_keeps_the_text_around():
    new = page.replace_section(TEXT, "ptq", "new table\n")
    assert new == "# B\n\nintro\n<!-- bench:ptq -->\nnew table\n<!-- /bench:ptq -->\nanalysis\n"
    assert page.replace_section(new, "ptq", "old table") == TEXT  # idempotent round trip


@pytest.mark.parametrize(
    "text, match",
    [
        ("no markers", "no section 'ptq'"),
        (TEXT + "<!-- bench:ptq -->\n", "each marker must appear once"),
        ("<!-- /bench:ptq -->\n<!-- bench:ptq -->\n", "each marker must appear once"),
    ],
)
def test_replace_section_refuses_bad_markers(text, match):
    with pytest.raises(ValueError, match=match):
        page.replace_section(text, "ptq", "x")


def test_bad_section_name():
    with pytest.raises(ValueError, match="use \\[a-z0-9_-\\]\\+"):
        page.markers("PTQ table")


def test_dated_block_states_date_machine_load_and_command():
    body = page.dated_block(
        "a  b\n1  2\n",
        command="python benchmarks/bench_ptq.py --write-docs",
        machine_line="CPU X, 2 CPUs",
        load_start=1.5,
        load_end=3.25,
        date=datetime.date(2026, 12, 5),
    )
    assert body == (
        "Measured 2026-12-05 on CPU X, 2 CPUs; load average 1.50 at the start, 3.25 at the "
        "end. Command: `python benchmarks/bench_ptq.py --write-docs`\n\n```text\na  b\n1  2\n```"
    )


def test_every_wired_benchmark_has_its_section_on_the_real_page():
    import re

    wired = {
        m.group(1): f.name
        for f in sorted((ROOT / "benchmarks").glob("bench_*.py"))
        for m in re.finditer(r'record_stdout\("([a-z0-9_-]+)"\)', f.read_text())
    }
    assert len(wired) >= 10, wired  # every bench_*.py script
    text = page.PAGE.read_text()
    for name in wired:
        assert page.replace_section(text, name, "x").count("x\n<!-- /bench:") == 1, wired[name]


SCRIPT = """
import sys
sys.path.insert(0, {bench!r})
import _page, pathlib
_page.record_stdout("ptq", page=pathlib.Path({path!r}))
print("method  jq  MCT")
print("mse     1.0  9.0")
if {fail}:
    raise RuntimeError("benchmark failed")
"""


@pytest.mark.parametrize("fail", [False, True])
def test_record_stdout_writes_the_output_only_after_a_clean_run(tmp_path, fail):
    path = tmp_path / "benchmarks.md"
    path.write_text(TEXT)
    code = SCRIPT.format(bench=str(ROOT / "benchmarks"), path=str(path), fail=fail)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "mse     1.0  9.0" in r.stdout  # still printed
    if fail:
        assert r.returncode == 1 and path.read_text() == TEXT
        return
    assert r.returncode == 0, r.stderr
    new = path.read_text()
    assert new.startswith("# B\n\nintro\n<!-- bench:ptq -->\nMeasured ")
    assert f"Measured {datetime.date.today().isoformat()} on " in new
    assert "load average" in new and "CPUs" in new
    assert "```text\nmethod  jq  MCT\nmse     1.0  9.0\n```\n<!-- /bench:ptq -->\nanalysis\n" in new
