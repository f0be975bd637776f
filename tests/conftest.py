"""Strict defaults for the whole suite (docstring examples included: tests/test_doctests.py)."""

import atexit
import collections
import os
import shutil
import tempfile

import jax
import numpy as np
import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
# jq turns JAX's persistent compilation cache on by default (in ~/.cache/jq/xla): the suite
# writes to a folder of its own instead, fresh per run (and per xdist worker).
if "JQ_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="jq-test-xla-")
    os.environ["JQ_COMPILATION_CACHE_DIR"] = _cache_dir
    atexit.register(shutil.rmtree, _cache_dir, True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def rng():
    """A seeded NumPy generator (tests never depend on global random state)."""
    return np.random.default_rng(0)


@pytest.fixture
def key():
    """A seeded JAX key."""
    return jax.random.key(0)


# Files that spend minutes in a subprocess of their own start first, so that under
# `pytest -n 2 --dist loadfile` the other worker runs the rest meanwhile (last, the long-process
# test ran ~3 min alone after every other file had finished). The rest run largest file first,
# as xdist's own reordering does; the Makefile passes --no-loadscope-reorder to keep this order.
_FIRST = ("tests/select/test_long_process.py",)


def pytest_collection_modifyitems(config, items):
    per_file = collections.Counter(item.nodeid.split("::")[0] for item in items)
    items.sort(
        key=lambda item: (
            not item.nodeid.startswith(_FIRST),
            -per_file[item.nodeid.split("::")[0]],
        )
    )
