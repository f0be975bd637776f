"""Op by op: each converted op matches torch (eager and jitted ``apply``), the error paths are
clear, and ``to_torch`` runs jq graphs (including ``fake_quant`` nodes) with torch ops.

Tolerance as in the zoo: max abs diff <= 1e-4 * max(1, max |torch output|), float32.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _helpers import Fn, check_model, randomize_  # noqa: E402

import jq  # noqa: E402
import jq_torch  # noqa: E402
from jq import Node, apply, register_op, registered_ops  # noqa: E402
from jq._src.graph import ops as jq_ops  # noqa: E402
from jq._src.graph.ops import fake_quant as fake_quant_op  # noqa: E402
from jq._src.select.quantizers import affine_grid, threshold_quantize  # noqa: E402


def _x(*shape, seed=0, positive=False):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return x.abs() + 0.5 if positive else x


def _case(op, model, *inputs):
    return pytest.param(op, model, inputs, id=f"{op}-{len(CASES)}")


CASES: list = []


def _add(op, model, *inputs):
    CASES.append(_case(op, model, *inputs))


torch.manual_seed(0)
# convolutions: stride, padding (int, "same" odd/even kernels, "valid"), dilation, groups, N-d
_add("conv", nn.Conv1d(4, 6, 3, stride=2, padding=1), _x(2, 4, 11))
_add("conv", nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), _x(2, 4, 9, 10))
_add("conv", nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), _x(1, 4, 7, 7))
# depthwise convs take a separate path (``_depthwise``): strides, dilation, asymmetric padding
_add("conv", nn.Conv2d(4, 4, 3, stride=2, padding=2, dilation=2, groups=4), _x(2, 4, 9, 10))
_add("conv", nn.Conv2d(4, 4, (4, 3), padding="same", groups=4), _x(1, 4, 8, 7))
_add("conv", nn.Conv1d(3, 3, 5, stride=3, padding=1, groups=3), _x(1, 3, 13))
_add("conv", nn.Conv2d(4, 8, 3, padding=1, groups=4), _x(1, 4, 6, 6))  # multiplier 2: XLA path
_add("conv", nn.Conv2d(4, 6, (3, 2), padding="same"), _x(1, 4, 8, 7))
_add("conv", nn.Conv2d(4, 6, 4, padding="same", dilation=2), _x(1, 4, 9, 9))
_add("conv", nn.Conv2d(4, 6, 3, padding="valid", stride=(2, 1)), _x(1, 4, 9, 9))
_add("conv", nn.Conv3d(2, 4, 3, padding=1, stride=(1, 2, 2)), _x(1, 2, 5, 6, 6))
_add(
    "conv_transpose",
    nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1),
    _x(2, 4, 5, 5),
)
_add("conv_transpose", nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, dilation=2), _x(1, 4, 5, 6))
_add("conv_transpose", nn.ConvTranspose1d(4, 2, 5, stride=3, padding=2, bias=False), _x(1, 4, 7))
_add("conv_transpose", nn.ConvTranspose3d(2, 2, 2, stride=2), _x(1, 2, 3, 3, 3))
# linear layers
_add("linear", nn.Linear(5, 7), _x(2, 3, 5))
_add("linear", nn.Linear(5, 7, bias=False), _x(4, 5))
_add("matmul", Fn(torch.matmul), _x(3, 4), _x(4, 5, seed=1))
_add("matmul", Fn(torch.matmul), _x(2, 3, 4), _x(4, 5, seed=1))
_add("matmul", Fn(torch.bmm), _x(2, 3, 4), _x(2, 4, 5, seed=1))
_add("matmul", Fn(torch.matmul), _x(2, 1, 3, 4), _x(1, 5, 4, 2, seed=1))
_add("matmul", Fn(lambda a, b: a @ b), _x(2, 3, 4), _x(4, seed=1))
_add("embedding", nn.Embedding(10, 4), torch.tensor([[1, 2, 9], [0, 0, 3]]))
# normalization
_add("batch_norm", randomize_(nn.Sequential(nn.BatchNorm2d(3))), _x(2, 3, 4, 4))
_add("batch_norm", randomize_(nn.Sequential(nn.BatchNorm1d(3))), _x(4, 3))
_add("batch_norm", randomize_(nn.Sequential(nn.BatchNorm1d(3))), _x(2, 3, 5))
_add("batch_norm", nn.BatchNorm2d(3, affine=False), _x(2, 3, 4, 4))
_add("layer_norm", nn.LayerNorm(8), _x(2, 3, 8))
_add("layer_norm", nn.LayerNorm((4, 8), elementwise_affine=False), _x(2, 4, 8))
_add("group_norm", nn.GroupNorm(2, 6), _x(2, 6, 3, 3))
_add("group_norm", nn.GroupNorm(3, 6, affine=False), _x(2, 6, 5))
# activations
for _op, _m in [
    ("relu", nn.ReLU()),
    ("relu6", nn.ReLU6()),
    ("hardtanh", nn.Hardtanh(-1.0, 2.0)),
    ("leaky_relu", nn.LeakyReLU(0.2)),
    ("gelu", nn.GELU()),
    ("gelu", nn.GELU(approximate="tanh")),
    ("silu", nn.SiLU()),
    ("hardswish", nn.Hardswish()),
    ("hardsigmoid", nn.Hardsigmoid()),
    ("sigmoid", nn.Sigmoid()),
    ("tanh", nn.Tanh()),
    ("softmax", nn.Softmax(dim=1)),
    ("softmax", Fn(lambda x: F.softmax(x, dim=-1))),
]:
    _add(_op, _m, 4 * _x(2, 5, 7))
# pooling
_add("max_pool", nn.MaxPool2d(3, 2, 1), _x(2, 3, 9, 9))
_add("max_pool", nn.MaxPool2d(3, 2, ceil_mode=True), _x(1, 3, 10, 10))
_add("max_pool", nn.MaxPool2d(2, dilation=2, padding=1), _x(1, 3, 9, 8))
_add("max_pool", nn.MaxPool1d(3, 2, 1, ceil_mode=True), _x(1, 3, 10))
_add("avg_pool", nn.AvgPool2d(3, 2, 1), _x(2, 3, 9, 9))
_add("avg_pool", nn.AvgPool2d(3, 2, 1, ceil_mode=True), _x(1, 3, 10, 10))
_add("avg_pool", nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), _x(1, 3, 10, 8))
_add("avg_pool", nn.AvgPool2d(2, divisor_override=3), _x(1, 3, 6, 6))
_add("avg_pool", nn.AvgPool1d(4, 3, 2, ceil_mode=True), _x(1, 3, 11))
_add("adaptive_avg_pool", nn.AdaptiveAvgPool2d(1), _x(2, 3, 5, 7))
_add("adaptive_avg_pool", nn.AdaptiveAvgPool2d((3, 5)), _x(1, 3, 7, 10))
_add("adaptive_avg_pool", nn.AdaptiveAvgPool2d((None, 2)), _x(1, 3, 5, 6))
_add("adaptive_avg_pool", nn.AdaptiveAvgPool1d(3), _x(1, 3, 8))
# arithmetic: tensor-tensor (broadcast across ranks) and tensor-scalar, both orders
_add("add", Fn(lambda x, y: x + y), _x(2, 3, 4), _x(3, 4, seed=1))
_add("add", Fn(lambda x, y: torch.add(x, y, alpha=2)), _x(2, 3), _x(2, 3, seed=1))
_add("sub", Fn(lambda x, y: x - y), _x(2, 3, 4), _x(4, seed=1))
_add("sub", Fn(lambda x: 3 - x), _x(2, 3))
_add("mul", Fn(lambda x, y: x * y), _x(2, 3, 1), _x(1, 4, seed=1))
_add("mul", Fn(lambda x: x * 0.5), _x(2, 3))
_add("div", Fn(lambda x, y: x / y), _x(2, 3), _x(2, 3, seed=1, positive=True))
_add("div", Fn(lambda x: 2 / x), _x(2, 3, positive=True))
_add("div", Fn(lambda x: x / 4), _x(2, 3))
# shapes
_add("cat", Fn(lambda x, y: torch.cat([x, y, x], dim=-1)), _x(2, 3), _x(2, 2, seed=1))
_add("reshape", Fn(lambda x: x.view(2, -1)), _x(2, 3, 4))
_add("reshape", Fn(lambda x: x.flatten(1)), _x(2, 3, 4))
_add("reshape", Fn(lambda x: x.unsqueeze(1).reshape(2, 1, 12).squeeze(1)), _x(2, 3, 4))
_add("permute", Fn(lambda x: x.permute(2, 0, 1)), _x(2, 3, 4))
_add("permute", Fn(lambda x: x.transpose(-1, 0)), _x(2, 3, 4))
_add("expand", Fn(lambda x: x.expand(3, -1, 4)), _x(1, 2, 1))
_add("slice", Fn(lambda x: x[:, 1:3]), _x(2, 5))
_add("slice", Fn(lambda x: x[..., ::2]), _x(2, 5))
_add("slice", Fn(lambda x: x[:, -3:-1]), _x(2, 5))
_add("select", Fn(lambda x: x[:, 0] + x[1]), _x(2, 2, 3))
_add("slice", Fn(lambda x: torch.split(x, [2, 3], dim=1)), _x(2, 5))
_add("slice", Fn(lambda x: x.chunk(3, dim=-1)), _x(2, 7))
_add("select", Fn(lambda x: x.unbind(1)), _x(2, 3))
_add("mean", Fn(lambda x: x.mean(dim=(1, 2))), _x(2, 3, 4))
_add("mean", Fn(lambda x: x.mean(-1, keepdim=True)), _x(2, 3, 4))
_add("mean", Fn(lambda x: x.mean()), _x(2, 3))
_add("relu", Fn(lambda x: F.dropout(x.contiguous().clone(), 0.5, training=False).relu()), _x(2, 3))
_add("cast", Fn(lambda x: (x.to(torch.int32) + 1) * 2), 5 * _x(2, 3))
_add("cast", Fn(lambda x: x.long() * 3), 5 * _x(2, 3))
# attention
_add(
    "scaled_dot_product_attention",
    Fn(F.scaled_dot_product_attention),
    _x(2, 2, 5, 4),
    _x(2, 2, 6, 4, seed=1),
    _x(2, 2, 6, 3, seed=2),
)
_add(
    "scaled_dot_product_attention",
    Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)),
    _x(2, 5, 4),
    _x(2, 5, 4, seed=1),
    _x(2, 5, 4, seed=2),
)
_add(
    "scaled_dot_product_attention",
    Fn(lambda q, m: F.scaled_dot_product_attention(q, q, q, attn_mask=m)),
    _x(1, 2, 5, 4),
    _x(5, 5, seed=3),
)
_add(
    "scaled_dot_product_attention",
    Fn(lambda q: F.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(5, 5).tril() > 0)),
    _x(1, 2, 5, 4),
)


class MHA(nn.Module):
    def __init__(self, need_weights):
        super().__init__()
        self.need_weights = need_weights
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, q, kv):
        out, w = self.mha(q, kv, kv, need_weights=self.need_weights)
        return out if w is None else (out, w)


_add("scaled_dot_product_attention", MHA(False), _x(2, 3, 8), _x(2, 5, 8, seed=1))
_add("softmax", MHA(True), _x(2, 3, 8), _x(2, 5, 8, seed=1))


class Conv1D(nn.Module):
    """GPT-2's ``Conv1D``: ``addmm(bias, x, weight)`` with the weight stored (in, out)."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.1)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x):
        out = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return out.view(x.size()[:-1] + (self.weight.size(-1),))


def _gelu_new(x):  # GPT-2's gelu: a cube through aten.pow.Tensor_Scalar
    return 0.5 * x * (1.0 + torch.tanh(0.7978845608 * (x + 0.044715 * torch.pow(x, 3.0))))


_add("linear", Conv1D(6, 4), _x(2, 3, 4))
_add(
    "add",
    Fn(lambda x, y, z: torch.addmm(x, y, z, beta=0.5, alpha=2.0)),
    _x(3, 5),
    _x(3, 4),
    _x(4, 5),
)
_add("integer_pow", Fn(_gelu_new), _x(2, 3))
_add("pow", Fn(lambda x: torch.pow(x.abs() + 1, 1.5)), _x(2, 3))
for _op, _fn in (
    ("abs", torch.abs),
    ("neg", torch.neg),
    ("exp", torch.exp),
    ("log", lambda x: torch.log(x.abs() + 0.1)),
    ("sqrt", lambda x: torch.sqrt(x.abs())),
    ("rsqrt", lambda x: torch.rsqrt(x.abs() + 0.1)),
    ("erf", torch.erf),
    ("sin", torch.sin),
    ("cos", torch.cos),
):
    _add(_op, Fn(_fn), _x(2, 3))
del _op, _fn


@pytest.mark.parametrize("op,model,inputs", CASES)
def test_op_matches_torch(op, model, inputs):
    graph = check_model(model, *inputs)["graph"]
    assert op in {n.op for n in graph.nodes}


def test_every_emitted_op_is_in_jq_vocabulary_and_torch_table():
    ops = {c.values[0] for c in CASES}
    assert ops <= set(registered_ops())
    # Ops the PTQ pipeline adds for itself ("ptq_*" hooks) are never exported.
    exportable = {op for op in registered_ops() if not op.startswith("ptq_")}
    assert exportable <= set(jq_torch._to_torch._TORCH_OPS)


# --- names, params, hashing ---------------------------------------------------------------


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.act(self.bn(self.conv(x)))
        y = self.act(y + y)
        return self.fc(y.mean(dim=(2, 3)))


def test_gpt2_conv1d_is_a_kernel_layer_with_its_weight_transposed():
    m = Conv1D(6, 4)
    graph, params = jq_torch.from_torch(m, _x(2, 3, 4))
    (lin,) = [n for n in graph.nodes if n.op == "linear"]
    np.testing.assert_array_equal(np.asarray(params[lin.name]["weight"]), m.weight.detach().T)


def test_names_params_and_layouts():
    model = Block().eval()
    graph, params = jq_torch.from_torch(model, torch.randn(2, 3, 8, 8))
    names = [n.name for n in graph.nodes]
    assert names == ["conv", "bn", "act", "add", "act_1", "mean", "fc"]
    assert graph.node("bn").attr("eps") == 1e-5
    assert set(params["bn"]) == {"weight", "bias", "running_mean", "running_var"}
    assert params["conv"]["weight"].shape == (4, 3, 3, 3)  # OIHW
    assert params["fc"]["weight"].shape == (2, 4)  # (out, in)
    assert graph.node("conv").shape == (2, 4, 8, 8)
    assert [n.name for n in graph.consumers("act")] == ["add"]
    np.testing.assert_array_equal(params["conv"]["bias"], model.conv.bias.detach().numpy())
    assert "act_1" in str(graph) and "(2, 2)" in str(graph)


def test_conversion_is_deterministic_and_jit_cache_is_shared():
    model = Block().eval()
    x = torch.randn(2, 3, 8, 8)
    g1, p1 = jq_torch.from_torch(model, x)
    g2, p2 = jq_torch.from_torch(model, x)
    assert g1 == g2 and hash(g1) == hash(g2) and g1.fingerprint() == g2.fingerprint()
    traces = []

    def f(graph, params, x):
        traces.append(1)
        return apply(graph, params, x)

    jf = jax.jit(f, static_argnums=0)
    jf(g1, p1, x.numpy())
    jf(g2, p2, x.numpy() + 1)
    assert len(traces) == 1


# --- error paths ----------------------------------------------------------------------------


class Unsupported3(nn.Module):
    def forward(self, x):
        a = torch.lgamma(x)  # ops without a converter (not in the Core ATen opset)
        b = torch.erfinv(x)
        c = torch.digamma(x)
        return a + b + c


def test_unsupported_ops_are_all_reported_at_once():
    with pytest.raises(jq_torch.UnsupportedOpError) as info:
        jq_torch.from_torch(Unsupported3().eval(), torch.randn(2, 3))
    err = info.value
    assert isinstance(err, NotImplementedError)
    ops = " ".join(u.op for u in err.ops)
    assert "lgamma" in ops and "erfinv" in ops and "digamma" in ops
    assert all(u.hint and u.node for u in err.ops)
    assert "3 unsupported" in str(err) and "register_converter" in str(err)


class ComputedWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, 3, 3))

    def forward(self, x, scale):
        folded = F.conv2d(x, self.w * 2)  # computed from params only: folded at conversion
        dynamic = F.conv2d(x, self.w * scale)  # computed from an input: not a layer
        return folded + dynamic + torch.erfinv(x).sum()


def test_weights_computed_from_inputs_are_reported_with_hint():
    x, scale = torch.randn(1, 3, 5, 5), torch.ones(4, 1, 1, 1)
    with pytest.raises(jq_torch.UnsupportedOpError) as info:
        jq_torch.from_torch(ComputedWeight().eval(), (x, scale))
    ops = info.value.ops
    assert [u.op for u in ops] == ["aten.conv2d.default", "aten.erfinv.default"]
    assert "must be a parameter" in ops[0].hint


def test_constants_computed_from_params_are_folded():
    model = Fn(lambda x: x @ torch.ones(4, 4).tril() + F.conv2d(x[None], torch.ones(2, 1, 1, 1)))
    graph = check_model(model, torch.randn(1, 4, 4))["graph"]
    assert [n.op for n in graph.nodes].count("constant") == 1  # the folded tril mask


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1


def test_data_dependent_control_flow_is_a_clear_error():
    with pytest.raises(jq_torch.DynamicControlFlowError, match="data-dependent control flow"):
        jq_torch.from_torch(DataDependent(), torch.randn(2, 3))


class NotExportable(nn.Module):
    def forward(self, x):
        return torch.from_numpy(x.numpy() * 2)


def test_model_torch_cannot_export_gets_torchs_reason():
    with pytest.raises(jq_torch.ExportError, match="torch.export could not capture") as info:
        jq_torch.from_torch(NotExportable(), torch.randn(2, 3))
    assert not isinstance(info.value, jq_torch.DynamicControlFlowError)
    assert "numpy" in str(info.value) and info.value.__cause__ is not None


def test_bad_arguments():
    with pytest.raises(TypeError, match="nn.Module"):
        jq_torch.from_torch(lambda x: x, torch.randn(2))
    with pytest.raises(TypeError, match="example_inputs"):
        jq_torch.from_torch(nn.ReLU(), ["not a tensor"])
    graph, _ = jq_torch.from_torch(nn.ReLU(), [np.zeros(2, np.float32)])  # NumPy is converted
    assert [n.op for n in graph.nodes] == ["relu"]
    with pytest.raises(ValueError, match="training mode"):
        jq_torch.from_torch(nn.BatchNorm1d(2).train(), torch.randn(3, 2))


# --- to_torch -------------------------------------------------------------------------------


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.ln = nn.LayerNorm(64)

    def forward(self, x):
        y = F.hardswish(self.bn(self.conv(x)))
        y = F.avg_pool2d(y, 2, ceil_mode=True)
        return self.ln(self.up(y).flatten(2)).softmax(-1)


def test_to_torch_round_trip():
    torch.manual_seed(0)
    model = randomize_(Net()).eval()
    x = torch.randn(2, 3, 8, 8)
    graph, params = jq_torch.from_torch(model, x)
    back = jq_torch.to_torch(graph, params)
    with torch.no_grad():
        np.testing.assert_allclose(back(x).numpy(), model(x).numpy(), atol=1e-5)
    assert "conv__weight" in back.state_dict()


def _with_fake_quant(graph, params, after, grid):
    """Insert a fake_quant node after ``after`` (as the PTQ pipeline does)."""
    fq = Node(f"{after}.fq", "fake_quant", (after,))
    nodes = []
    for node in graph.nodes:
        inputs = tuple(fq.name if s == after else s for s in node.inputs)
        nodes.append(node.replace(inputs=inputs))
        if node.name == after:
            nodes.append(fq)
    outputs = tuple(fq.name if s == after else s for s in graph.outputs)
    params = {**params, fq.name: dict(zip(("scale", "q_min", "q_max"), grid, strict=True))}
    return graph.replace(nodes=nodes, outputs=outputs), params


@pytest.mark.parametrize("per_channel", [False, True])
def test_fake_quant_node_jax_and_torch_agree(per_channel):
    torch.manual_seed(0)
    model = randomize_(Net()).eval()
    x = torch.randn(2, 3, 8, 8)
    graph, params = jq_torch.from_torch(model, x)
    shape = (1, 4, 1, 1) if per_channel else ()
    t = jnp.full(shape, 1.5) * (jnp.arange(4).reshape(shape) + 1 if per_channel else 1.0)
    grid = affine_grid(4, threshold=t, signed=True)
    graph, params = _with_fake_quant(graph, params, "bn", grid)
    assert [n.name for n in graph.consumers("bn.fq")] == ["hardswish"]
    y_jax = np.asarray(jax.jit(apply, static_argnums=0)(graph, params, x.numpy()))
    with torch.no_grad():
        y_torch = jq_torch.to_torch(graph, params)(x).numpy()
    np.testing.assert_allclose(y_jax, y_torch, atol=1e-5)
    # The node quantizes exactly like jq's reciprocal-step threshold quantizer.
    _, acts = apply(graph, params, x.numpy(), capture=("bn", "bn.fq"))
    want = threshold_quantize(acts["bn"], t, 4, True, exact=False)
    np.testing.assert_array_equal(acts["bn.fq"], want)


@pytest.mark.parametrize("signed", [True, False])
def test_fake_quant_is_torch_fake_quantize_bit_for_bit(signed):
    """The deployed form (what MCT's exported quantizers call), ties included."""
    rng = np.random.default_rng(0)
    t = np.float32(0.7301)  # a symmetric (non power-of-two) threshold: inexact reciprocal
    step = t / (128 if signed else 256)
    ties = (np.arange(-300, 300) + 0.5).astype(np.float32) * step
    x = np.concatenate([ties, rng.standard_normal(4000).astype(np.float32)])
    grid = affine_grid(8, threshold=jnp.float32(t), signed=signed)
    ours = np.asarray(
        jax.jit(fake_quant_op)(dict(zip(("scale", "q_min", "q_max"), grid, strict=True)), x)
    )
    lo, hi = (-128, 127) if signed else (0, 255)
    ref = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), float(step), 0, lo, hi)
    np.testing.assert_array_equal(ours, ref.numpy())
    twin = jq_torch._to_torch._TORCH_OPS["fake_quant"](
        {k: torch.tensor(float(g)) for k, g in zip(("scale", "q_min", "q_max"), grid, strict=True)},
        torch.from_numpy(x),
    )
    np.testing.assert_array_equal(twin.numpy(), ref.numpy())
    # Per channel (weights): the pipeline's kernel quantizer is torch's per-channel form.
    w = rng.standard_normal((6, 5)).astype(np.float32)
    tw = np.abs(w).max(1) * np.float32(0.9)
    wq = np.asarray(jq.fake_quant(w, jq.QParams(threshold=tw[:, None]), n_bits=8))
    ref_w = torch.fake_quantize_per_channel_affine(
        torch.from_numpy(w),
        torch.from_numpy(tw / 128),
        torch.zeros(6, dtype=torch.int32),
        0,
        -128,
        127,
    )
    np.testing.assert_array_equal(wq, ref_w.numpy())


def test_to_torch_reports_ops_without_torch_form_and_is_extensible():
    name = "test_only_square"
    register_op(name, override=True)(lambda params, x: x * x)
    try:
        graph, params = jq_torch.from_torch(nn.ReLU(), torch.randn(3))
        graph = graph.replace(
            nodes=graph.nodes + (Node("sq", name, (graph.outputs[0],)),), outputs=("sq",)
        )
        with pytest.raises(jq_torch.UnsupportedOpError, match=name):
            jq_torch.to_torch(graph, params)
        jq_torch.register_torch_op(name, override=True)(lambda params, x: x * x)
        x = torch.randn(3)
        np.testing.assert_allclose(
            jq_torch.to_torch(graph, params)(x).numpy(), np.asarray(apply(graph, params, x.numpy()))
        )
    finally:
        jq_ops._OPS.pop(name, None)
        jq_torch._to_torch._TORCH_OPS.pop(name, None)


class _Pads(nn.Module):
    def __init__(self):
        super().__init__()
        self.zero = nn.ZeroPad2d((1, 0, 2, 1))

    def forward(self, x):
        a = F.pad(x, (1, 2, 0, 3), value=0.5)[..., :4, 1:6]
        return self.zero(x)[..., 1:5, :5] * a + F.pad(x, (-1, 1))


def test_constant_pad_converts_and_exports():
    x = torch.randn(2, 3, 4, 5)
    graph = check_model(_Pads(), x)["graph"]
    assert [n.op for n in graph.nodes].count("pad") == 3
    graph, params = jq_torch.from_torch(_Pads(), x)
    with torch.no_grad():
        np.testing.assert_array_equal(
            jq_torch.to_torch(graph, params)(x).numpy(), _Pads()(x).numpy()
        )
    # reflect / replicate / circular modes convert too (``mode_pad``), and run in to_torch
    for mode in ("reflect", "replicate", "circular"):
        pad = Fn(lambda x, mode=mode: F.pad(x, (1, 2, 2, 0), mode=mode))
        graph = check_model(pad, x)["graph"]
        assert [n.op for n in graph.nodes] == ["mode_pad"]
        graph, params = jq_torch.from_torch(pad, x)
        np.testing.assert_array_equal(jq_torch.to_torch(graph, params)(x).numpy(), pad(x).numpy())


# --- the aliases onnx2torch writes (issue 25) ----------------------------------------------


class _Onnx2TorchStyle(nn.Module):
    """How onnx2torch writes ONNX's HardSigmoid (``torch.clip(x * alpha + beta, 0, 1)``) and
    ``Pow`` with a tensor exponent, around a conv and a linear layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.exponent = nn.Parameter(torch.full((1, 4, 1, 1), 2.0), requires_grad=False)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.conv(x)
        y = y * torch.clip(y * 0.2 + 0.5, 0, 1)  # HardSwish, as onnx2torch spells HardSigmoid
        y = torch.pow(torch.clip(y, min=0.0) + 1.0, self.exponent)  # aten.pow.Tensor_Tensor
        y = torch.true_divide(y.mean(dim=(2, 3)), 2.0)
        return self.fc(y)


def test_onnx2torch_aliases_convert_and_quantize():
    """``aten.clip.default`` and ``aten.pow.Tensor_Tensor`` used to be refused ("no
    converter") before calibration; they convert, match torch, and quantize with MCT's call."""
    torch.manual_seed(0)
    model = _Onnx2TorchStyle().eval()
    x = torch.randn(4, 3, 8, 8)
    ep = torch.export.export(model, (x,)).run_decompositions({})
    targets = {str(n.target) for n in ep.graph.nodes}
    assert {"aten.clip.default", "aten.pow.Tensor_Tensor", "aten.true_divide.Tensor"} <= targets
    graph = check_model(model, x)["graph"]
    assert {"pow", "maximum", "minimum"} <= {n.op for n in graph.nodes}

    batches = [
        torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)
    ]
    core = jq.core.CoreConfig(progress=False)
    qmodel, info = jq.ptq.pytorch_post_training_quantization(
        model, lambda: ([b] for b in batches), core_config=core
    )
    assert {li.name for li in info.layers if li.kind == "weights"} == {"conv", "fc"}
    with torch.no_grad():
        yq, yf = qmodel(batches[0]).numpy(), model(batches[0]).numpy()
    sqnr = 10 * np.log10(np.sum(yf**2) / np.sum((yf - yq) ** 2))
    assert sqnr > 20, sqnr
