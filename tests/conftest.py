"""Fixtures for the whole suite; the strict process settings (compilation-cache folder, rank
promotion) are in the repository's root ``conftest.py``, shared with the doctests."""

import jax
import numpy as np
import pytest


@pytest.fixture
def rng():
    """A seeded NumPy generator (tests never depend on global random state)."""
    return np.random.default_rng(0)


@pytest.fixture
def key():
    """A seeded JAX key."""
    return jax.random.key(0)
