"""End-to-end PTQ of a digits-sized torch CNN: MCT's call with jq, export, info, bad input."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
jq_torch = pytest.importorskip("jq_torch")

import jq  # noqa: E402
import jq.core  # noqa: E402
import jq.ptq  # noqa: E402
from jq import apply  # noqa: E402

QUIET = jq.core.CoreConfig(progress=False)


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.fc = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = CNN().eval()
    with torch.no_grad():
        m.bn1.running_mean.uniform_(-0.3, 0.3)
        m.bn1.running_var.uniform_(0.5, 2.0)
    return m


@pytest.fixture(scope="module")
def batches():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(16, 1, 8, 8, generator=g) * 2 - 0.5 for _ in range(3)]


def test_mct_call_runs_and_export_matches_jax(model, batches, tmp_path):
    qc = jq.core.QuantizationConfig(
        activation_error_method=jq.core.QuantizationErrorMethod.NOCLIPPING
    )
    core = jq.core.CoreConfig(quantization_config=qc, progress=False)
    qmodel, info = jq.ptq.pytorch_post_training_quantization(
        model, lambda: ([b] for b in batches), core_config=core
    )
    assert isinstance(qmodel, torch.nn.Module)
    x = batches[0]
    with torch.no_grad():
        yq, yf = qmodel(x).numpy(), model(x).numpy()
    assert 10 * np.log10(np.sum(yf**2) / np.sum((yf - yq) ** 2)) > 25
    assert info.config["activation_error_method"] == "noclipping"
    assert {li.name for li in info.layers if li.kind == "weights"} == {"conv1", "conv2", "fc"}
    t = info.timings  # the front end's stages beside the pipeline's; total is the whole call
    assert t["export"] > 0 and t["to_torch"] > 0 and t["statistics"] > 0
    assert t["total"] == pytest.approx(t["export"] + t["pipeline"] + t["to_torch"])
    path = tmp_path / "info.json"
    info.save(path)
    assert jq.core.QuantizationInfo.load(path) == jq.core.QuantizationInfo.from_dict(info.to_dict())

    # The exported module computes the quantized JAX graph (same pipeline, graph form).
    graph, params = jq_torch.from_torch(model, (x,))
    res = jq.ptq.quantize_graph(
        graph, params, lambda: ([b.numpy()] for b in batches), core_config=core
    )
    yj = np.asarray(jax.jit(apply, static_argnums=0)(res.graph, res.params, x.numpy()))
    with torch.no_grad():
        yt = jq_torch.to_torch(res.graph, res.params)(x).numpy()
    np.testing.assert_allclose(yt, yj, rtol=1e-4, atol=1e-4 * np.abs(yj).max())
    np.testing.assert_allclose(yq, yt, rtol=1e-6, atol=1e-7)

    # Other batch sizes: the same graph (a dynamic batch axis; per-sample results).
    assert res.graph.input_shapes == ((-1, 1, 8, 8),)
    with torch.no_grad():
        np.testing.assert_array_equal(qmodel(x[:5]).numpy(), yq[:5])
        np.testing.assert_array_equal(qmodel(torch.cat([x, x[:3]])).numpy()[16:], yq[:3])
        np.testing.assert_array_equal(jq_torch.to_torch(res.graph, res.params)(x[:5]), yt[:5])
    with pytest.raises(ValueError, match=r"serves \[\(-1, 1, 8, 8\)\]"):
        qmodel(x[:, :, :4])


def test_bad_input_and_unsupported_layer(model, batches):
    fn = jq.ptq.pytorch_post_training_quantization
    with pytest.raises(ValueError, match="no batch"):
        fn(model, lambda: iter(()), core_config=QUIET)
    nan = batches[0].clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fn(model, lambda: iter([[nan]]), core_config=QUIET)
    with pytest.raises(TypeError, match="core_config"):
        fn(model, lambda: iter([[batches[0]]]), core_config=jq.core.QuantizationConfig())
    with pytest.raises(NotImplementedError, match="mixed precision"):
        fn(model, lambda: iter([[batches[0]]]), target_resource_utilization=object())
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        fn(model, lambda: iter([[batches[0]]]), core_config=QUIET, mesh="all devices")

    class Cum(torch.nn.Module):
        def forward(self, x):
            return torch.erfinv(x)

    with pytest.raises(jq_torch.UnsupportedOpError, match="erfinv"):
        fn(Cum().eval(), lambda: iter([[batches[0]]]), core_config=QUIET)


def test_config_field_names_and_defaults_match_mct():
    mct = pytest.importorskip("model_compression_toolkit")
    ours = {f.name: f.default for f in dataclasses.fields(jq.core.QuantizationConfig)}
    theirs = {f.name: f.default for f in dataclasses.fields(mct.core.QuantizationConfig)}
    assert set(ours) - set(theirs) == {"mct_compat", "weights_hessian"}  # jq only
    assert set(theirs) <= set(ours)
    for name, default in theirs.items():
        mine = ours[name]
        if hasattr(default, "name"):
            assert mine.name == default.name, name
        else:
            assert mine == default, name
    # MCT's own enum members are accepted.
    qc = jq.core.QuantizationConfig(activation_error_method=mct.core.QuantizationErrorMethod.KL)
    assert qc.activation_error_method is jq.core.QuantizationErrorMethod.KL
    # An MCT target platform object is read (its default activation and conv kernel configs).
    tpc = mct.get_target_platform_capabilities(tpc_version="1.0", device_type="imx500")
    assert jq.ptq.resolve_target_platform(tpc) == jq.core.TargetPlatform()


class _SNCNet(torch.nn.Module):
    """SiLU (shifted, into a padded conv), Hardswish and GELU (not shifted: ratio), an
    avg-pool + reshape on the way to the linear layer."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.c1, self.b1, self.a1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU()
        self.c2, self.a2 = nn.Conv2d(8, 8, 3, padding=1), nn.Hardswish()
        self.c3, self.a3 = nn.Conv2d(8, 8, 1), nn.GELU()
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = self.a2(self.c2(self.a1(self.b1(self.c1(x)))))
        x = torch.nn.functional.avg_pool2d(self.a3(self.c3(x)), 2)
        return self.fc(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("snc", [True, False])
def test_compat_export_equals_mcts_exported_model(snc):
    """Compat mode reproduces MCT's whole PTQ, shift-negative correction included: the exported
    module's outputs equal those of the model MCT exports, bit for bit."""
    mct = pytest.importorskip("model_compression_toolkit")
    torch.manual_seed(0)
    model = _SNCNet().eval()
    xs = [torch.randn(8, 3, 8, 8) * 3 for _ in range(3)]

    def gen():
        return ([x] for x in xs)

    qc = jq.core.QuantizationConfig(mct_compat=True, shift_negative_activation_correction=snc)
    cfg = jq.core.CoreConfig(quantization_config=qc, progress=False)
    ours, info = jq.ptq.pytorch_post_training_quantization(model, gen, core_config=cfg)
    mq = mct.core.QuantizationConfig(shift_negative_activation_correction=snc)
    theirs, _ = mct.ptq.pytorch_post_training_quantization(
        model, gen, core_config=mct.core.CoreConfig(quantization_config=mq)
    )
    bits = {li.name: li.n_bits for li in info.layers if li.kind == "activation"}
    assert bits["a1"] == (16 if snc else 8) and ("a1_post_add" in bits) == snc
    holders = {
        n.removesuffix("_activation_holder_quantizer"): m.activation_holder_quantizer
        for n, m in theirs.named_modules()
        if hasattr(m, "activation_holder_quantizer")
    }
    for li in info.layers:
        if li.kind == "activation" and li.op != "input":
            q = holders["avg_pool2d" if li.name == "avg_pool" else li.name]
            assert (q.num_bits, q.signed, float(q.threshold_np)) == (
                li.n_bits,
                li.signed,
                li.threshold,
            )
    with torch.no_grad():
        for x in xs + [xs[0][:3]]:  # and another batch size
            np.testing.assert_array_equal(ours(x).numpy(), theirs(x).numpy())


def _editor_rules(mct, ne):
    """One edit of each kind jq applies, on _SNCNet's nodes (MCT's names equal jq's here)."""
    from mct_quantizers import QuantizationMethod as MQ

    em = mct.core.QuantizationErrorMethod

    def weights(**kw):
        return ne.ChangeCandidatesWeightsQuantConfigAttr(attr_name="weight", **kw)

    return [
        ne.EditRule(
            filter=ne.NodeNameFilter("c2"),
            action=weights(weights_n_bits=4, weights_error_method=em.MAE),
        ),
        ne.EditRule(
            filter=ne.NodeNameFilter("a2"),
            action=ne.ChangeCandidatesActivationQuantConfigAttr(
                activation_n_bits=4, activation_error_method=em.NOCLIPPING
            ),
        ),
        ne.EditRule(
            filter=ne.NodeTypeFilter(torch.nn.Linear),
            action=ne.ChangeCandidatesWeightsQuantizationMethod("weight", MQ.POWER_OF_TWO),
        ),
        ne.EditRule(
            filter=ne.NodeNameScopeFilter("a3"),
            action=ne.ChangeCandidatesActivationQuantConfigAttr(activation_error_method=em.KL),
        ),
        # MCT names a conv that absorbed a batch norm "<conv>_bn" (jq: "c1", as the report).
        ne.EditRule(
            filter=ne.NodeNameFilter("c1_bn"), action=weights(weights_per_channel_threshold=False)
        ),
        ne.EditRule(
            filter=ne.NodeNameFilter("c3"),
            action=ne.ChangeCandidatesActivationQuantizationMethod(MQ.SYMMETRIC),
        ),
        # After the search: MCT quantizes at 6 bits with the parameters searched at 8.
        ne.EditRule(
            filter=ne.NodeNameFilter("fc"),
            action=ne.ChangeFinalActivationQuantConfigAttr(activation_n_bits=6),
        ),
        ne.EditRule(
            filter=ne.NodeNameFilter("fc"),
            action=ne.ChangeFinalWeightsQuantConfigAttr(attr_name="weight", weights_n_bits=6),
        ),
    ]


def test_compat_network_editor_and_bit_widths_equal_mcts():
    """The same DebugConfig network editor and BitWidthConfig on MCT's PTQ and on jq's compat
    mode: equal bit widths and thresholds on every edited (and unedited) quantizer, and the
    exported module computes what MCT's model computes, bit for bit. Edits: a kernel at 4 bits
    with MAE, an activation at 4 bits with NOCLIPPING, the linear kernel power-of-two (by
    type), GELU's activation KL (by scope), a per-tensor kernel (by MCT's name for a conv with
    a folded batch norm), a symmetric activation, 6-bit final quantizers on fc, a 2-bit kernel
    by BitWidthConfig; shift-negative correction stays on (a1, into c2)."""
    mct = pytest.importorskip("model_compression_toolkit")
    ne = mct.core.network_editor
    torch.manual_seed(0)
    model = _SNCNet().eval()
    xs = [torch.randn(8, 3, 8, 8) * 3 for _ in range(3)]

    def gen():
        return ([x] for x in xs)

    def configs():  # fresh MCT objects for each library
        bwc = mct.core.BitWidthConfig()
        bwc.set_manual_weights_bit_width(ne.NodeNameFilter("c3"), 2, "weight")
        return mct.core.DebugConfig(network_editor=_editor_rules(mct, ne)), bwc

    debug, bwc = configs()
    theirs, _ = mct.ptq.pytorch_post_training_quantization(
        model, gen, core_config=mct.core.CoreConfig(debug_config=debug, bit_width_config=bwc)
    )
    debug, bwc = configs()
    qc = jq.core.QuantizationConfig(mct_compat=True)
    cfg = jq.core.CoreConfig(
        quantization_config=qc, debug_config=debug, bit_width_config=bwc, progress=False
    )
    ours, info = jq.ptq.pytorch_post_training_quantization(model, gen, core_config=cfg)
    mods = dict(theirs.named_modules())
    expect = {"c1": (8, False), "c2": (4, True), "c3": (2, True), "fc": (6, True)}
    for li in info.layers:
        if li.kind == "weights":
            q = (mods.get(li.name) or mods[li.name + "_bn"]).weights_quantizers["weight"]
            assert (
                (q.num_bits, bool(q.per_channel))
                == expect[li.name]
                == (
                    li.n_bits,
                    li.channel_axis is not None,
                )
            )
            np.testing.assert_array_equal(
                np.ravel(q.threshold_np).astype(np.float32), np.float32(li.threshold)
            )
        elif li.op != "input":
            name = "avg_pool2d" if li.name == "avg_pool" else li.name
            q = mods[name + "_activation_holder_quantizer"].activation_holder_quantizer
            # float32 thresholds: jq keeps a symmetric threshold as the float32 it quantizes
            # with, MCT the float64 before it (both quantize in float32).
            assert (q.num_bits, q.signed, np.float32(q.threshold_np)) == (
                li.n_bits,
                li.signed,
                np.float32(li.threshold),
            ), li.name
    assert info.layer("fc", "weights").method == "power_of_two"
    assert (info.layer("a2").n_bits, info.layer("a2").error_method) == (4, "noclipping")
    assert info.layer("a3").error_method == "kl" and info.layer("a1").n_bits == 16
    assert (info.layer("c3").method, info.layer("fc").n_bits) == ("symmetric", 6)
    with torch.no_grad():
        for x in xs + [xs[0][:3]]:
            np.testing.assert_array_equal(ours(x).numpy(), theirs(x).numpy())


class _CollapseNet(torch.nn.Module):
    """Both collapsing patterns and one MCT refuses: conv -> bn -> 1x1 conv (linear, after
    folding), conv(x) + x (residual), x + (conv -> 1x1 conv) (linear, then residual) and a
    strided conv -> 1x1 conv (left alone)."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.c1, self.b1, self.c2 = (
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.Conv2d(8, 8, 1),
        )
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.c4, self.c5 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.Conv2d(8, 8, 1)
        self.c6, self.c7 = nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.c2(self.b1(self.c1(x))))
        x = torch.relu(self.c3(x) + x)
        x = torch.relu(x + self.c5(self.c4(x)))
        return self.fc(torch.flatten(self.c7(self.c6(x)), 1))


@pytest.mark.parametrize("collapse", [True, False])
def test_compat_collapsing_equals_mct(collapse):
    """With the collapsing flags on (MCT's defaults) or off, compat mode quantizes the same
    layers as MCT, under MCT's names, with the same thresholds (kernels per channel,
    activations), and the exported module's outputs equal those of MCT's, bit for bit."""
    mct = pytest.importorskip("model_compression_toolkit")
    torch.manual_seed(0)
    model = _CollapseNet().eval()
    with torch.no_grad():
        model.b1.running_mean.uniform_(-0.3, 0.3)
        model.b1.running_var.uniform_(0.5, 2.0)
    xs = [torch.randn(8, 3, 8, 8) for _ in range(3)]

    def gen():
        return ([x] for x in xs)

    flags = dict(linear_collapsing=collapse, residual_collapsing=collapse)
    qc = jq.core.QuantizationConfig(mct_compat=True, **flags)
    cfg = jq.core.CoreConfig(quantization_config=qc, progress=False)
    ours, info = jq.ptq.pytorch_post_training_quantization(model, gen, core_config=cfg)
    mq = mct.core.QuantizationConfig(**flags)
    theirs, _ = mct.ptq.pytorch_post_training_quantization(
        model, gen, core_config=mct.core.CoreConfig(quantization_config=mq)
    )

    # MCT renames a conv it folds a batch norm into ("c1" -> "c1_bn"); jq keeps the name.
    def mct_name(name):
        return "c1_bn" + name[2:] if name.startswith("c1") else name

    kernels = {
        n: m.weights_quantizers["weight"]
        for n, m in theirs.named_modules()
        if type(m).__name__ == "PytorchQuantizationWrapper"
    }
    holders = {
        n.removesuffix("_activation_holder_quantizer"): m.activation_holder_quantizer
        for n, m in theirs.named_modules()
        if hasattr(m, "activation_holder_quantizer")
    }
    collapsed = ["c1_c2_collapsed", "c3_add_collapsed", "c4_c5_collapsed_add_1_collapsed"]
    plain = ["c1", "c2", "c3", "c4", "c5"]
    mine = [li.name for li in info.layers if li.kind == "weights"]
    assert mine == (collapsed if collapse else plain) + ["c6", "c7", "fc"]
    assert sorted(mct_name(n) for n in mine) == sorted(kernels)
    for li in info.layers:
        if li.kind == "weights":
            want = np.asarray(kernels[mct_name(li.name)].threshold_np, np.float64).ravel()
            if li.name in collapsed:
                # MCT collapses kernels with torch's float32 conv kernels, whose rounding
                # depends on the CPU (measured on an AMD EPYC: 1.6e-8 apart, relative 9e-8);
                # a few float32 ulps of the kernel move its threshold by as much.
                np.testing.assert_allclose(li.threshold, want, rtol=1e-6, atol=0)
            else:  # the same kernels on both sides: jq's own arithmetic decides, bit for bit
                np.testing.assert_array_equal(li.threshold, want)
        else:
            q = holders[mct_name(li.name)]
            assert (q.num_bits, q.signed, float(q.threshold_np)) == (
                li.n_bits,
                li.signed,
                li.threshold,
            )
    acts = {li.name for li in info.layers if li.kind == "activation"}
    assert len(acts) == len(holders) and ("c4" in acts) != collapse  # no quantizer inside
    with torch.no_grad():
        for x in xs:
            if collapse:  # thresholds a few ulps apart (above): outputs as close as that
                np.testing.assert_allclose(ours(x).numpy(), theirs(x).numpy(), rtol=1e-5, atol=1e-5)
            else:
                np.testing.assert_array_equal(ours(x).numpy(), theirs(x).numpy())
