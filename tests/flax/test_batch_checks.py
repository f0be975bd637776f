"""Flax calibration batches that do not fit the model are named before ``jq.from_jax`` traces
it (issue 22, item 5), as torch's are (``tests/ptq/test_named_mistakes.py``): the rank, the
layout (Flax is channels last) and the feature count of each input a convolution or linear
layer reads."""

from __future__ import annotations

import numpy as np
import pytest

nnx = pytest.importorskip("flax.nnx")
linen = pytest.importorskip("flax.linen")

import jax  # noqa: E402

import jq  # noqa: E402
import jq.core  # noqa: E402
import jq.ptq  # noqa: E402
from jq_flax._inputs import check_inputs  # noqa: E402

FN = "flax_post_training_quantization"
CFG = jq.core.CoreConfig(progress=False)
X = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)  # NHWC


class Net(nnx.Module):
    def __init__(self, rngs, reached=None):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.fc = nnx.Linear(4, 2, rngs=rngs)
        self.reached = reached

    def __call__(self, x):
        h = self.conv(x).mean((1, 2))
        if self.reached is not None:
            self.reached.append(1)  # Python side effect: the call got past the conv
        return self.fc(h)


@pytest.fixture
def no_trace(monkeypatch):
    """jq.from_jax fails the test if reached: the checks run before it."""

    def refuse(*a, **k):
        raise AssertionError("jq.from_jax ran")

    monkeypatch.setattr(jq, "from_jax", refuse)


@pytest.mark.parametrize(
    "batch, message",
    [
        (
            X[0],
            "input 0 (x) has shape (8, 8, 3); conv (Conv) expects (batch, H, W, 3): add the "
            "batch axis (x[None])",
        ),
        (
            X.transpose(0, 3, 1, 2),
            "input 0 (x) has shape (2, 3, 8, 8); conv (Conv) expects (batch, H, W, 3), "
            "channels last; channels first? move them last (x.transpose(0, 2, 3, 1))",
        ),
        (
            X[:, 0, :, :],
            "input 0 (x) has shape (2, 8, 3); conv (Conv) expects (batch, H, W, 3): add the "
            "batch axis (x[None])",
        ),
        (X[0, 0], "input 0 (x) has shape (8, 3); conv (Conv) expects rank 4, (batch, H, W, 3)"),
    ],
    ids=["no-batch-axis", "channels-first", "rank-3", "rank-2"],
)
def test_nnx_batches_that_do_not_fit_are_named_before_tracing(no_trace, batch, message):
    with pytest.raises(ValueError) as e:
        jq.ptq.flax_post_training_quantization(
            Net(nnx.Rngs(0)), lambda: iter([[batch]]), core_config=CFG
        )
    assert str(e.value) == f"{FN}: representative batch 0, " + message
    assert nnx.Conv.__call__.__qualname__ == "Conv.__call__"  # the watch is undone


def test_linen_dense_features_are_named(no_trace):
    class Mlp(linen.Module):
        @linen.compact
        def __call__(self, x, train: bool = False):
            return linen.Dense(3, name="head")(x)

    model = Mlp()
    variables = model.init(jax.random.key(0), np.ones((1, 5), np.float32))
    with pytest.raises(ValueError) as e:
        jq.ptq.flax_post_training_quantization(
            model,
            lambda: iter([[np.ones((2, 4), np.float32)]]),
            core_config=CFG,
            variables=variables,
            apply_kwargs={"train": False},
        )
    assert str(e.value) == (
        f"{FN}: representative batch 0, input 0 (x) has shape (2, 4); head (Dense) expects "
        "(batch, ..., 5), features last"
    )


def test_linen_conv_channels_first_is_named():
    model = linen.Conv(4, (3, 3))  # the root module: named by its class
    variables = model.init(jax.random.key(0), X[:1])
    with pytest.raises(
        ValueError, match=r"\(2, 3, 8, 8\); Conv \(Conv\) expects \(batch, H, W, 3\), ch"
    ):
        check_inputs(model, [X.transpose(0, 3, 1, 2)], FN, variables=variables)


def test_a_fitting_batch_passes_and_the_check_stops_at_the_first_layer():
    reached: list[int] = []
    net = Net(nnx.Rngs(0), reached)
    check_inputs(net, [X], FN)  # fits: no error
    assert reached == []  # the checking call stopped at the conv, which read the input
    assert nnx.Conv.__call__.__qualname__ == "Conv.__call__"
    net(X)
    assert reached == [1]
