"""The models users bring (issue 14; ``zoo_models.ZOO``): each converts with jq_torch, and the
jitted graph matches torch within ``1e-4 * max(1, max|y|)`` (float32) on the example batch
(2 samples) and on a batch of 3 (every zoo graph keeps a dynamic batch axis). The torch twin
of the graph (``to_torch``) matches too.

`make test` converts the quick models (about 5 s each); the heavy vision models (10-25 s each on
2 cores) run in `make test-all`.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("timm")

import zoo_models  # noqa: E402
from _helpers import RTOL, max_diff  # noqa: E402

import jq  # noqa: E402
import jq_torch  # noqa: E402

_jit_apply = jax.jit(jq.apply, static_argnums=0)
QUICK = [n for n, (_, _, quick) in zoo_models.ZOO.items() if quick]
HEAVY = [n for n, (_, _, quick) in zoo_models.ZOO.items() if not quick]


def _check(name: str) -> None:
    model = zoo_models.build(name)
    example = zoo_models.inputs(name, 2, seed=1)
    graph, params = jq_torch.from_torch(model, example)
    assert graph.input_shapes[0][0] == -1, graph.pinned_by  # every zoo model: any batch
    batches = [example, zoo_models.inputs(name, 3, seed=2)]
    twin = jq_torch.to_torch(graph, params)
    for xs in batches:
        with torch.no_grad():
            ref = [model(*xs).numpy()]
            tw = twin(*xs)
        tol = RTOL * max(1.0, float(np.abs(ref[0]).max()))
        assert float(np.abs(ref[0]).max()) > 1e-2  # a meaningful comparison
        got = _jit_apply(graph, params, *[x.numpy() for x in xs])
        assert max_diff(ref, got) <= tol, (name, xs[0].shape, max_diff(ref, got), tol)
        assert max_diff(ref, tw) <= tol, (name, "to_torch", max_diff(ref, tw), tol)


@pytest.mark.parametrize("name", QUICK)
def test_zoo_model(name):
    _check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", HEAVY)
def test_zoo_model_heavy(name):
    _check(name)


def test_zoo_size():
    assert len(zoo_models.ZOO) >= 15


def test_a_cache_output_is_an_error_with_the_fix():
    import transformers as T

    cfg = T.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16)
    model = T.GPT2LMHeadModel(cfg).eval()  # use_cache defaults to True
    with pytest.raises(jq_torch.ExportError, match="use_cache=False"):
        jq_torch.from_torch(model, torch.zeros(2, 8, dtype=torch.long))
