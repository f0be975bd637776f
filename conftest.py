"""Process settings for every pytest run here: the suite under ``tests/`` and the docstring
examples of ``jq/`` and ``adapters/jq_torch/`` (``--doctest-modules``, see pyproject.toml).

The fixtures live in ``tests/conftest.py``.
"""

import atexit
import importlib.util
import os
import shutil
import tempfile

import jax

os.environ.setdefault("TQDM_DISABLE", "1")
# jq turns JAX's persistent compilation cache on by default (in ~/.cache/jq/xla): the suite
# writes to a folder of its own instead, fresh per run (and per xdist worker).
if "JQ_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="jq-test-xla-")
    os.environ["JQ_COMPILATION_CACHE_DIR"] = _cache_dir
    atexit.register(shutil.rmtree, _cache_dir, True)
jax.config.update("jax_numpy_rank_promotion", "raise")

# The adapter's examples need torch; without it (``pip install -e .[test]`` minus ``torch``)
# they are not collected, and the torch tests skip themselves.
collect_ignore = [] if importlib.util.find_spec("torch") else ["adapters"]
