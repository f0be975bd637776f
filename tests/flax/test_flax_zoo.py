"""Flax zoo through jq_flax (and an Equinox MLP through jq.from_jax): each model's graph
matches the model within 1e-5 relative, and PTQ runs on each (NNX comes back as an
nnx.Module, Linen as apply + variables)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

nnx = pytest.importorskip("flax.nnx")

from _models import CausalLM, DigitsCNN, Encoder, LinenResNet  # noqa: E402

import jq  # noqa: E402
import jq.core  # noqa: E402
import jq.ptq  # noqa: E402
import jq_flax  # noqa: E402

RTOL = 1e-5  # max |graph - model| <= RTOL * max(1, max |model|), float32
CFG = jq.core.CoreConfig(progress=False)


def _rel(got, ref) -> float:
    ref = np.asarray(ref)
    return float(np.max(np.abs(np.asarray(got) - ref)) / max(1.0, np.max(np.abs(ref))))


def _inputs(kind: str, rng, n: int = 2):
    if kind == "tokens":
        return rng.integers(0, 20, size=(n, 8)).astype(np.int32)
    shape = {"digits": (n, 8, 8, 1), "image": (n, 16, 16, 3)}[kind]
    return rng.normal(size=shape).astype(np.float32)


ZOO = [
    (DigitsCNN, "digits", {"batch_norm", "silu", "conv", "linear", "mean"}),
    (Encoder, "image", {"layer_norm", "softmax", "gelu", "dot_general", "conv"}),
    (CausalLM, "tokens", {"embedding", "layer_norm", "masked_softmax", "linear"}),
]


@pytest.mark.parametrize(
    "cls, kind, ops",
    # The transformer encoder and causal LM convert and quantize in 15-25 s each on 2 cores:
    # `make test-all` runs them (the torch zoo's transformers stay in `make test`).
    [ZOO[0], *(pytest.param(*z, marks=pytest.mark.slow) for z in ZOO[1:])],
    ids=[c.__name__ for c, _, _ in ZOO],
)
def test_nnx_zoo_matches(rng, cls, kind, ops):
    model = cls(nnx.Rngs(0))
    x = _inputs(kind, rng)
    graph, params = jq_flax.from_nnx(model, x)
    ref = jq_flax.inference_view(model)(x)
    assert _rel(jq.apply(graph, params, x), ref) <= RTOL
    assert ops <= {n.op for n in graph.nodes}
    # No permute between layers: only at the image input and before reshapes.
    assert sum(n.op == "permute" for n in graph.nodes) <= 4


AVG_POOLS = [
    ("nnx", dict(window_shape=(2, 2), strides=(2, 2)), True),
    ("nnx", dict(window_shape=(3, 3), padding="SAME", count_include_pad=False), False),
    ("linen", dict(window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1))), True),
    ("linen", dict(window_shape=(3, 3), padding="SAME", count_include_pad=False), False),
]


@pytest.mark.parametrize("api, kw, include_pad", AVG_POOLS)
def test_avg_pool_is_one_layer(rng, api, kw, include_pad):
    """Flax's avg_pool (a window sum and a division) is one ``avg_pool`` node, stored
    channels-first between the conv and the next one; a window torch cannot express (SAME
    padding of an even window is one-sided) stays a sum and a division, still exact."""
    from flax import linen

    pool = nnx.avg_pool if api == "nnx" else linen.avg_pool
    p = {
        "a": {"kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32)},
        "b": {"kernel": rng.normal(size=(1, 1, 4, 3)).astype(np.float32)},
    }

    def conv(x, k):
        dn = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dn)

    def fn(p, x):
        y = pool(jax.nn.silu(conv(x, p["a"]["kernel"])), **kw)
        y = conv(y, p["b"]["kernel"])
        return y + pool(y, (2, 2), (1, 1), "SAME")  # one-sided padding: not torch's

    x = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
    graph, params = jq.from_jax(fn, p, x)
    assert _rel(jq.apply(graph, params, x), fn(p, x)) <= RTOL
    (avg,) = [n for n in graph.nodes if n.op == "avg_pool"]
    assert graph.node("silu").name in avg.inputs and graph.consumers(avg.name)[0].name == "b"
    assert avg.attr("count_include_pad") is include_pad
    assert [n.op for n in graph.nodes].count("reduce_window") == 1


def _batches(kind, n_batches=2, n=8):
    return [[_inputs(kind, np.random.default_rng(i), n)] for i in range(n_batches)]


def test_nnx_ptq_returns_an_nnx_module(rng):
    model = DigitsCNN(nnx.Rngs(0))
    batches = _batches("digits")
    q, info = jq.ptq.flax_post_training_quantization(
        model, lambda: iter(batches), core_config=CFG, mesh=False
    )
    assert isinstance(q, nnx.Module) and isinstance(q, jq_flax.QuantizedModule)
    x = batches[0][0]
    ref = np.asarray(jq_flax.inference_view(model)(x))
    got = np.asarray(q(x))
    sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((got - ref) ** 2))
    assert sqnr > 25, sqnr
    assert q(x[:3]).shape == (3, 10)  # another batch size: re-traced and rebased
    kinds = {(layer.name, layer.kind) for layer in info.layers}
    assert {("stem", "weights"), ("dw", "weights"), ("head", "weights")} <= kinds
    assert np.asarray(jax.jit(lambda m, x: m(x))(q, x)).shape == (8, 10)


def test_linen_resnet_matches_names_and_ptq(rng):
    model = LinenResNet()
    batches = [[b[0].repeat(3, axis=-1)] for b in _batches("digits")]
    x = batches[1][0]
    variables = model.init(jax.random.key(0), x)
    graph, params = jq_flax.from_linen(model, variables, x)
    ref = np.asarray(model.apply(variables, x))
    assert _rel(jq.apply(graph, params, x), ref) <= RTOL
    names = [n.name for n in graph.nodes if n.op in ("conv", "batch_norm", "linear")]
    assert names[:3] == ["Conv_0", "LinenBlock_0.Conv_0", "LinenBlock_0.BatchNorm_0"]
    assert names[-1] == "Dense_0"
    # Other nodes take the module scope from the name stack (a module's second relu: _1).
    others = {n.name for n in graph.nodes}
    assert {"LinenBlock_0.relu", "LinenBlock_0.add", "LinenBlock_0.relu_1"} <= others
    q, info = jq.ptq.flax_post_training_quantization(
        model, lambda: iter(batches), core_config=CFG, variables=variables
    )
    got = np.asarray(q.apply(q.variables, x))
    assert _rel(got, ref) < 0.1 and np.array_equal(got, np.asarray(q(x)))
    assert sum(layer.kind == "weights" for layer in info.layers) == 6


@pytest.mark.slow
@pytest.mark.parametrize("cls, kind", [(Encoder, "image"), (CausalLM, "tokens")])
def test_nnx_transformers_ptq(cls, kind):
    model = cls(nnx.Rngs(0))
    batches = _batches(kind)
    q, info = jq.ptq.flax_post_training_quantization(model, lambda: iter(batches), core_config=CFG)
    x = batches[0][0]
    ref = np.asarray(jq_flax.inference_view(model)(x))
    assert _rel(q(x), ref) < 0.1
    assert any(layer.op.endswith("softmax") for layer in info.layers)
    # Another batch size: constants replicated over the batch (the causal mask) are stored
    # once and expanded, so the rebased graph stays right.
    assert _rel(q(x[:3]), ref[:3]) < 0.1


def test_equinox_mlp_matches_names_and_ptq(rng):
    """An Equinox MLP (vmapped over the batch) through jq.from_jax: its arrays are the params
    (``eqx.partition``), node names their pytree paths (``layers.0``), and PTQ runs on the
    graph (``jq.ptq.quantize_graph``)."""
    eqx = pytest.importorskip("equinox")
    model = eqx.nn.MLP(16, 4, 32, 2, activation=jax.nn.gelu, key=jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_array)

    def fn(p, x):
        return jax.vmap(eqx.combine(p, static))(x)

    x = rng.normal(size=(8, 16)).astype(np.float32)
    graph, gparams = jq.from_jax(fn, params, x)
    ref = np.asarray(fn(params, x))
    assert _rel(jq.apply(graph, gparams, x), ref) <= RTOL
    assert _rel(jax.jit(jq.apply, static_argnums=0)(graph, gparams, x), ref) <= RTOL
    assert [(n.name, n.op) for n in graph.nodes] == [
        ("layers.0", "linear"),
        ("gelu", "gelu"),
        ("layers.1", "linear"),
        ("gelu_1", "gelu"),
        ("layers.2", "linear"),
    ]
    np.testing.assert_array_equal(gparams["layers.0"]["weight"], model.layers[0].weight)
    batches = [[rng.normal(size=(8, 16)).astype(np.float32)] for _ in range(4)]
    res = jq.ptq.quantize_graph(graph, gparams, lambda: iter(batches), core_config=CFG)
    assert {li.name for li in res.info.layers if li.kind == "weights"} == {
        "layers.0",
        "layers.1",
        "layers.2",
    }
    assert _rel(jq.apply(res.graph, res.params, x), ref) < 0.1


def test_errors(rng):
    with pytest.raises(TypeError, match="nnx.Module or a flax.linen.Module"):
        jq.ptq.flax_post_training_quantization(object(), lambda: iter([]), core_config=CFG)
    with pytest.raises(TypeError, match="needs its variables"):
        jq.ptq.flax_post_training_quantization(LinenResNet(), lambda: iter([]), core_config=CFG)
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        model = DigitsCNN(nnx.Rngs(0))
        batches = _batches("digits")
        jq.ptq.flax_post_training_quantization(
            model, lambda: iter(batches), core_config=CFG, mesh="all"
        )
    with pytest.raises(TypeError, match="flax.nnx.Module"):
        jq_flax.from_nnx(LinenResNet(), _inputs("digits", rng))
