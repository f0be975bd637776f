"""``jq._src.runtime.cache``: JAX's persistent compilation cache, on by default for jq.

JAX's cache settings are global to a process and its file cache is initialised once, so each
behaviour is checked in a fresh subprocess with a controlled environment (``XDG_CACHE_HOME``
under ``tmp_path``, no inherited JAX/jq cache variables, CPU only). Cache hits are counted with
JAX's monitoring event ``/jax/compilation_cache/cache_hits`` (jax/_src/compiler.py). The warning
and the clearing helper are checked in this process, with jq's decision and JAX's cache folder
saved and restored around them.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import jq
from jq._src.runtime import cache as _cache

ROOT = Path(__file__).resolve().parents[2]

# Variables of the parent environment that would change the outcome.
_CLEARED = (
    "JAX_COMPILATION_CACHE_DIR",
    "JAX_ENABLE_COMPILATION_CACHE",
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
    "JQ_COMPILATION_CACHE",
    "JQ_COMPILATION_CACHE_DIR",
)

_SCRIPT = """
import json, os
import jax, jax.numpy as jnp
events = []
jax.monitoring.register_event_listener(lambda name, **kwargs: events.append(name))
{before}
from jq._src.runtime.cache import ensure_compilation_cache
at_import = jax.config.jax_compilation_cache_dir
first = ensure_compilation_cache()
os.environ["JQ_COMPILATION_CACHE"] = "0"  # decided once: a later change is not re-read
again = ensure_compilation_cache()
jax.jit(lambda x: jnp.sin(x) * 3.0 + 1.0)(jnp.arange(8.0)).block_until_ready()
print(json.dumps(dict(
    at_import=at_import, first=first, again=again,
    jax_dir=jax.config.jax_compilation_cache_dir,
    min_time=jax.config.jax_persistent_cache_min_compile_time_secs,
    hits=events.count("/jax/compilation_cache/cache_hits"),
    misses=events.count("/jax/compilation_cache/cache_misses"),
)))
"""


def _run(tmp_path: Path, env: dict[str, str] | None = None, before: str = "") -> dict:
    """Runs the script in a fresh interpreter; returns its JSON line."""
    full = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    full.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), JAX_PLATFORMS="cpu", **(env or {}))
    code = _SCRIPT.format(before=textwrap.dedent(before))
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_default_folder_is_written_and_a_second_process_hits(tmp_path, monkeypatch):
    folder = tmp_path / "xdg" / "jq" / "xla"
    one = _run(tmp_path)
    assert one["at_import"] is None  # importing jq configures nothing
    assert one["first"] == one["again"] == one["jax_dir"] == str(folder)
    assert one["min_time"] == 0
    assert one["misses"] >= 1 and one["hits"] == 0
    written = _entries(folder)
    assert any(name.endswith("-cache") for name in written), written
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0  # JAX trusts what it loads

    two = _run(tmp_path)
    assert two["hits"] >= 1 and two["misses"] == 0
    assert _entries(folder) == written

    _set_env(monkeypatch, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert jq.clear_compilation_cache() == str(folder)
    assert folder.is_dir() and _entries(folder) == set()


def test_opt_out_changes_nothing_and_writes_nothing(tmp_path):
    out = _run(tmp_path, {"JQ_COMPILATION_CACHE": "Off"})
    assert out["first"] is None and out["jax_dir"] is None
    assert out["min_time"] == 1.0  # JAX's default, untouched
    assert not (tmp_path / "xdg").exists()


@pytest.mark.parametrize("value", ["0", "false", "OFF", " no "])
def test_opt_out_values(value):
    assert _cache._opted_out(value)


@pytest.mark.parametrize("value", [None, "", "1", "on", "yes", "true"])
def test_opt_in_values(value):
    assert not _cache._opted_out(value)


@pytest.mark.parametrize("how", ["env", "config"])
def test_user_jax_cache_is_kept(tmp_path, how):
    user = str(tmp_path / "user")
    if how == "env":
        out = _run(tmp_path, {"JAX_COMPILATION_CACHE_DIR": user})
    else:
        out = _run(tmp_path, before=f'jax.config.update("jax_compilation_cache_dir", {user!r})')
    assert out["first"] == out["jax_dir"] == user
    assert out["min_time"] == 1.0  # the user's cache keeps JAX's thresholds
    assert not (tmp_path / "xdg").exists()


def test_chosen_folder_takes_effect_after_an_earlier_compilation(tmp_path):
    chosen = tmp_path / "chosen"
    before = "jax.jit(lambda x: x - 1.0)(jnp.ones(2)).block_until_ready()"
    out = _run(tmp_path, {"JQ_COMPILATION_CACHE_DIR": str(chosen)}, before=before)
    assert out["first"] == out["jax_dir"] == str(chosen)
    assert out["misses"] >= 1
    assert any(name.endswith("-cache") for name in _entries(chosen))
    assert not (tmp_path / "xdg").exists()


def test_unwritable_folder_warns_once_and_runs_without_cache(tmp_path, monkeypatch, fresh_decision):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    folder = blocker / "cache"  # cannot be created: its parent is a regular file
    _set_env(monkeypatch, JQ_COMPILATION_CACHE_DIR=str(folder))
    with pytest.warns(UserWarning, match=re.escape(repr(str(folder)))):
        assert _cache.ensure_compilation_cache() is None
    assert _cache.ensure_compilation_cache() is None  # decided: no second warning
    assert jax.config.jax_compilation_cache_dir is None
    assert float(jax.jit(lambda x: x + 1.0)(jnp.float32(1.0))) == 2.0


def test_clear_removes_only_jax_cache_entries(tmp_path, monkeypatch):
    folder = tmp_path / "chosen"
    (folder / "xla_gpu_per_fusion_autotune_cache_dir").mkdir(parents=True)
    for name in ("jit_f-abc-cache", "jit_f-abc-atime", ".lockfile", "notes.txt"):
        (folder / name).write_text("x")
    _set_env(monkeypatch, JQ_COMPILATION_CACHE_DIR=str(folder))
    assert jq.clear_compilation_cache() == str(folder)
    assert _entries(folder) == {"notes.txt"}  # a shared folder keeps what is not JAX's
    _set_env(monkeypatch, JQ_COMPILATION_CACHE_DIR=str(tmp_path / "missing"))
    assert jq.clear_compilation_cache() == str(tmp_path / "missing")


def test_default_folder_follows_xdg(tmp_path, monkeypatch):
    _set_env(monkeypatch, XDG_CACHE_HOME=str(tmp_path))
    assert _cache.jq_cache_dir() == tmp_path / "jq" / "xla"
    _set_env(monkeypatch, XDG_CACHE_HOME="relative/ignored")  # the XDG spec ignores it
    assert _cache.jq_cache_dir() == Path.home() / ".cache" / "jq" / "xla"
    _set_env(monkeypatch, JQ_COMPILATION_CACHE_DIR="~/mine")
    assert _cache.jq_cache_dir() == Path.home() / "mine"


@pytest.fixture
def fresh_decision():
    """An undecided ``jq._src.runtime.cache`` and no JAX cache folder; both restored afterwards."""
    saved = (_cache._decided, _cache._decision, jax.config.jax_compilation_cache_dir)
    _cache._decided, _cache._decision = False, None
    jax.config.update("jax_compilation_cache_dir", None)
    try:
        yield
    finally:
        _cache._decided, _cache._decision = saved[0], saved[1]
        jax.config.update("jax_compilation_cache_dir", saved[2])


def _set_env(monkeypatch, **values: str) -> None:
    """Clears the inherited cache variables and sets ``values`` (undone after the test)."""
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
