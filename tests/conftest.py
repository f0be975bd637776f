"""Strict defaults for the whole suite."""

import os

import jax
import numpy as np
import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def rng():
    """A seeded NumPy generator (tests never depend on global random state)."""
    return np.random.default_rng(0)


@pytest.fixture
def key():
    """A seeded JAX key."""
    return jax.random.key(0)
