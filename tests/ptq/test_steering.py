"""Per-layer steering (``jq/_src/ptq/steering/``, applied by ``placement.place``): jq's
``overrides``, MCT's network editor and ``BitWidthConfig``, resolved on node names as the
report prints them.

The golden rule: a steered node gets exactly what a run with the same settings for every node
gives it, and every other node what the unsteered run gives it (statistics come from the float
model, so quantizers do not depend on each other, shift-negative correction aside). MCT's
forms are checked against jq's (same resolved settings, same quantized model); parity with MCT
itself is in ``tests/torch/test_ptq_torch.py``. No torch here: ``NodeTypeFilter`` matches by
class name, so a stand-in class named ``Conv2d`` does.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import jq
import jq.core
from jq import Graph, Node
from jq._src.ptq import steering as _st
from jq._src.ptq.placement import ActConfig, KernelConfig, Plan, place
from jq.ptq import quantize_graph

CONV = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1)


def _net(seed=0):
    """x (N,3,8,8) -> layer1.conv -> layer1.relu -> layer2.conv -> layer2.act (SiLU) ->
    pool (mean) -> fc. Kernels: layer1.conv, layer2.conv, fc; activation quantizers: x,
    layer1.relu, layer2.act, pool, fc (the convs are fused with their activations)."""
    r = np.random.default_rng(seed)
    nodes = (
        Node("layer1.conv", "conv", ("x",), CONV),
        Node("layer1.relu", "relu", ("layer1.conv",)),
        Node("layer2.conv", "conv", ("layer1.relu",), CONV),
        Node("layer2.act", "silu", ("layer2.conv",)),
        Node("pool", "mean", ("layer2.act",), {"axis": (2, 3), "keepdims": False}),
        Node("fc", "linear", ("pool",)),
    )
    g = Graph(("x",), nodes, ("fc",), input_shapes=[(-1, 3, 8, 8)])
    f32 = np.float32
    p = {
        "layer1.conv": {
            "weight": r.normal(0, 0.3, (8, 3, 3, 3)).astype(f32),
            "bias": r.normal(0, 0.1, 8).astype(f32),
        },
        "layer2.conv": {
            "weight": r.normal(0, 0.2, (8, 8, 3, 3)).astype(f32),
            "bias": r.normal(0, 0.1, 8).astype(f32),
        },
        "fc": {"weight": r.normal(0, 0.4, (4, 8)).astype(f32), "bias": np.zeros(4, f32)},
    }
    xs = [r.normal(0, 1, (8, 3, 8, 8)).astype(f32) for _ in range(2)]
    return g, p, xs


def _run(core=None, tp=None, **fields):
    g, p, xs = _net()
    core = core or jq.core.CoreConfig(progress=False, **fields)
    return quantize_graph(g, p, lambda: ([x] for x in xs), core_config=core, target_platform=tp)


@pytest.fixture(scope="module")
def plain():
    return _run()


def _resolve(core: jq.core.CoreConfig, compat=False, aliases=None) -> Plan:
    """The quantizer plan of ``_net`` under ``core``'s rules (``compat``: MCT's order)."""
    g = _net()[0]
    qc = dataclasses.replace(core.quantization_config, mct_compat=compat)
    tp = jq.core.TargetPlatform()
    return place(g, qc=qc, tp=tp, rules=core.rules, aliases=aliases)


def _same(a, b):
    """Two LayerInfo records quantize alike (SQNR and analysis aside)."""
    for f in ("n_bits", "method", "error_method", "signed", "channel_axis"):
        assert getattr(a, f) == getattr(b, f), (a.name, f, getattr(a, f), getattr(b, f))
    for f in ("threshold", "range_min", "range_max"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), (a.name, f)
        if x is not None:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f"{a.name} {f}")


# -- jq's form ----------------------------------------------------------------------------


def test_overrides_change_only_the_matched_nodes(plain):
    """A kernel at 4 bits and, by glob, layer2's activations at 6-bit NOCLIPPING: each equals
    the run with those settings everywhere; every other quantizer equals the plain run."""
    res = _run(
        overrides={
            "layer1.conv": {"weights_n_bits": 4},
            "layer2.*": {"activation_error_method": "noclipping", "activation_n_bits": 6},
        }
    )
    w4 = _run(tp=jq.core.TargetPlatform(weights_n_bits=4))
    qc = jq.core.QuantizationConfig(activation_error_method="noclipping")
    a6 = _run(
        core=jq.core.CoreConfig(quantization_config=qc, progress=False),
        tp=jq.core.TargetPlatform(activation_n_bits=6),
    )
    for li in res.info.layers:
        if (li.name, li.kind) == ("layer1.conv", "weights"):
            ref = w4
        elif (li.name, li.kind) == ("layer2.act", "activation"):
            ref = a6
        else:
            ref = plain
        _same(li, ref.info.layer(li.name, li.kind))
    assert res.info.layer("layer1.conv", "weights").n_bits == 4
    w = np.asarray(res.params["layer1.conv"]["weight"])
    assert max(len(np.unique(w[o])) for o in range(8)) <= 16  # a 4-bit grid per channel
    notes = [n for n in res.info.notes if n.startswith("steering:")]
    assert notes == [
        "steering: overrides['layer1.conv'] -> layer1.conv: weights_n_bits=4",
        "steering: overrides['layer2.*'] -> layer2.act: activation_error_method=noclipping, "
        "activation_n_bits=6",
    ]
    assert res.info.config == plain.info.config  # the global settings, unchanged


def test_later_rules_win_field_by_field():
    core = jq.core.CoreConfig(
        overrides={
            "*": {"activation_n_bits": 6, "activation_error_method": "mae"},
            "fc": jq.core.NodeOverride(activation_n_bits=8),  # the record, as a mapping's value
            "layer*.conv": {"weights_error_method": "lp", "weights_n_bits": 5},
            "layer2.conv": {"weights_n_bits": 3},
        }
    )
    s = _resolve(core)
    mse, mae, lp = jq.ErrorMethod.MSE, jq.ErrorMethod.MAE, jq.ErrorMethod.LP
    pot = jq.QuantizationMethod.POWER_OF_TWO
    sym = jq.QuantizationMethod.SYMMETRIC
    assert s.act("fc") == ActConfig(mae, 8, pot, 8)
    assert s.act("x") == s.act("pool") == ActConfig(mae, 6, pot, 6)
    assert s.kernel("layer1.conv") == KernelConfig(lp, 5, sym, True, 5)
    assert s.kernel("layer2.conv") == KernelConfig(lp, 3, sym, True, 3)
    assert s.kernel("fc") == KernelConfig(mse, 8, sym, True, 8)


def test_methods_per_channel_and_switching_quantization_off(plain):
    res = _run(
        overrides={
            "layer2.conv": {"weights_per_channel_threshold": False},
            "layer1.conv": {"weights_quantization_method": "uniform"},
            "layer1.relu": {"activation_quantization_method": "symmetric"},
            "fc": {"enable_weights_quantization": False},
            "pool": {"enable_activation_quantization": False},
        }
    )
    info = res.info
    per_tensor = info.layer("layer2.conv", "weights")
    assert per_tensor.channel_axis is None and len(per_tensor.threshold) == 1
    uni = info.layer("layer1.conv", "weights")
    assert uni.method == "uniform" and uni.threshold is None and len(uni.range_min) == 8
    sym = info.layer("layer1.relu")
    assert sym.method == "symmetric"
    assert sym.threshold != plain.info.layer("layer1.relu").threshold  # not a power of two
    assert [li.name for li in info.layers if li.kind == "weights"] == [
        "layer1.conv",
        "layer2.conv",
    ]
    np.testing.assert_array_equal(res.params["fc"]["weight"], _net()[1]["fc"]["weight"])
    assert "pool" not in {li.name for li in info.layers}
    assert not any(n.name == "pool.act_quant" for n in res.graph.nodes)
    _same(info.layer("fc"), plain.info.layer("fc"))


@pytest.mark.slow  # AUTO's evaluation of every method on the steered layers: ~20 s on 2 cores
def test_auto_on_some_layers_and_fixed_on_others():
    """Global activation AUTO with one value pinned to MSE, and AUTO on one kernel only: the
    AUTO quantizers get an analysis, the check's uniform options change only them."""
    qc = jq.core.QuantizationConfig(activation_error_method="auto")
    overrides = {
        "fc": {"activation_error_method": "mse"},
        "layer2.conv": {"weights_error_method": "auto"},
    }
    core = jq.core.CoreConfig(quantization_config=qc, overrides=overrides, progress=False)
    info = _run(core=core).info
    analysed = [(li.name, li.kind) for li in info.layers if li.analysis is not None]
    assert analysed == [
        ("layer2.conv", "weights"),
        ("x", "activation"),
        ("layer1.relu", "activation"),
        ("layer2.act", "activation"),
        ("pool", "activation"),
    ]
    assert info.layer("fc").error_method == "mse"
    assert "hmse" in info.layer("layer2.conv", "weights").analysis["methods"]
    assert info.layer("layer1.conv", "weights").error_method == "mse"
    (note,) = [n for n in info.notes if n.startswith("auto: model output")]
    assert "weights hmse" in note and "activations kl" in note


def test_override_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown field 'weight_n_bits' \(did you mean"):
        jq.core.CoreConfig(overrides={"fc": {"weight_n_bits": 4}})
    with pytest.raises(ValueError, match=r"overrides\['fc'\]: weights_n_bits: must be in 1..16"):
        jq.core.CoreConfig(overrides={"fc": {"weights_n_bits": 0}})
    with pytest.raises(TypeError, match="weights_n_bits: must be an int"):
        jq.core.CoreConfig(overrides={"fc": {"weights_n_bits": "4"}})
    with pytest.raises(ValueError, match="unknown error_method='best'"):
        jq.core.CoreConfig(overrides={"fc": {"activation_error_method": "best"}})
    with pytest.raises(ValueError, match="sets no field"):
        jq.core.CoreConfig(overrides={"fc": {}})
    with pytest.raises(TypeError, match="overrides must be a mapping"):
        jq.core.CoreConfig(overrides=[("fc", {"weights_n_bits": 4})])
    with pytest.raises(ValueError, match="set it in QuantizationConfig"):
        jq.core.CoreConfig(overrides={"fc": {"activation_error_method": "hmse"}})
    # Against the graph: no match names the closest names.
    with pytest.raises(ValueError, match=r"matches no node .*closest names: 'layer1.conv'"):
        _resolve(jq.core.CoreConfig(overrides={"layer1.cnv": {"weights_n_bits": 4}}))
    with pytest.raises(ValueError, match=r"layer1.conv is fused with layer1.relu"):
        _resolve(jq.core.CoreConfig(overrides={"layer1.conv": {"activation_n_bits": 4}}))
    with pytest.raises(ValueError, match=r"no.* weights quantizer: layer1.relu .*kernels: fc"):
        _resolve(jq.core.CoreConfig(overrides={"layer1.relu": {"weights_n_bits": 4}}))
    with pytest.raises(ValueError, match="jq.ptq.quantize_graph: overrides"):
        _run(overrides={"layer3.*": {"weights_n_bits": 4}})


# -- MCT's forms ---------------------------------------------------------------------------

try:
    import model_compression_toolkit as mct
except ImportError:  # the jq-form tests above still run
    mct = None
needs_mct = pytest.mark.skipif(mct is None, reason="needs model-compression-toolkit")
ne = mct.core.network_editor if mct else None
EM = mct.core.QuantizationErrorMethod if mct else None


class Conv2d:
    """Stands in for ``torch.nn.Conv2d``: ``NodeTypeFilter`` compares by class name."""


def _editor(*rules):
    return jq.core.CoreConfig(debug_config=mct.core.DebugConfig(network_editor=list(rules)))


def _weights(**kw):
    return ne.ChangeCandidatesWeightsQuantConfigAttr(attr_name="weight", **kw)


@needs_mct
def test_mct_filters_select_as_mct_names_them():
    def hit(f):
        s = _resolve(_editor(ne.EditRule(filter=f, action=_weights(weights_n_bits=4))))
        return sorted(k for k, c in s.kernel_configs.items() if c.n_bits == 4)

    assert hit(ne.NodeNameFilter("layer2.conv")) == ["layer2.conv"]
    assert hit(ne.NodeNameFilter("layer2_conv")) == ["layer2.conv"]  # MCT's spelling
    # MCT renames a conv that absorbed a batch norm "<conv>_bn"; the pipeline passes aliases.
    rule = _editor(ne.EditRule(ne.NodeNameFilter("layer1_conv_bn"), _weights(weights_n_bits=4)))
    aliases = {"layer1.conv_bn": "layer1.conv"}
    s = _resolve(rule, aliases=aliases)
    assert s.kernel("layer1.conv").n_bits == 4
    assert _st.spellings("layer1.conv", aliases) == (
        "layer1.conv",
        "layer1_conv",
        "layer1.conv_bn",
        "layer1_conv_bn",
    )
    assert hit(ne.NodeNameScopeFilter("layer")) == ["layer1.conv", "layer2.conv"]
    assert hit(ne.NodeTypeFilter(Conv2d)) == ["layer1.conv", "layer2.conv"]
    assert hit(ne.NodeTypeFilter("linear")) == ["fc"]  # a jq op name
    either = ne.NodeNameFilter("fc") | ne.NodeNameScopeFilter("layer1")
    assert hit(either) == ["fc", "layer1.conv"]
    assert hit(ne.NodeTypeFilter(Conv2d) & ne.NodeNameScopeFilter("2")) == ["layer2.conv"]
    assert hit(ne.NodeNameScopeFilter("layer").logic_not()) == ["fc"]
    with pytest.raises(ValueError, match=r"NodeNameFilter\('layer_conv'\)\) matches no node"):
        hit(ne.NodeNameFilter("layer_conv"))
    with pytest.raises(ValueError, match="the model's ops: conv, input, linear, mean"):
        hit(ne.NodeTypeFilter("softmax"))

    class Bilinear:
        pass

    with pytest.raises(ValueError, match=r"NodeTypeFilter\(Bilinear\): jq does not know"):
        _editor(ne.EditRule(filter=ne.NodeTypeFilter(Bilinear), action=_weights(weights_n_bits=4)))


@needs_mct
def test_mct_actions_resolve_like_the_same_overrides():
    from mct_quantizers import QuantizationMethod as MQ
    from model_compression_toolkit.core.common.quantization.node_quantization_config import (
        ActivationQuantizationMode,
    )

    rules = [
        ne.EditRule(
            filter=ne.NodeNameFilter("layer2.act"),
            action=ne.ChangeCandidatesActivationQuantConfigAttr(
                activation_n_bits=6, activation_error_method=EM.NOCLIPPING
            ),
        ),
        ne.EditRule(
            filter=ne.NodeNameFilter("layer1.relu"),
            action=ne.ChangeCandidatesActivationQuantizationMethod(MQ.SYMMETRIC),
        ),
        ne.EditRule(
            filter=ne.NodeNameFilter("pool"),
            action=ne.ChangeCandidatesActivationQuantConfigAttr(
                quant_mode=ActivationQuantizationMode.NO_QUANT
            ),
        ),
        ne.EditRule(
            filter=ne.NodeTypeFilter(Conv2d),
            action=_weights(weights_error_method=EM.MAE, weights_per_channel_threshold=False),
        ),
        ne.EditRule(
            filter=ne.NodeNameFilter("fc"),
            action=ne.ChangeCandidatesWeightsQuantizationMethod("weight", MQ.POWER_OF_TWO),
        ),
        ne.EditRule(filter=ne.NodeNameFilter("fc"), action=_weights(weights_n_bits=6)),
    ]
    overrides = {
        "layer2.act": {"activation_n_bits": 6, "activation_error_method": "noclipping"},
        "layer1.relu": {"activation_quantization_method": "symmetric"},
        "pool": {"enable_activation_quantization": False},
        "layer*.conv": {"weights_error_method": "mae", "weights_per_channel_threshold": False},
        "fc": {"weights_quantization_method": "power_of_two", "weights_n_bits": 6},
    }
    theirs, ours = _resolve(_editor(*rules)), _resolve(jq.core.CoreConfig(overrides=overrides))
    assert theirs._replace(notes=()) == ours._replace(notes=())  # every quantizer alike
    assert "pool" not in theirs.act_configs and "pool" not in theirs.activations
    assert theirs.notes[0] == (
        "steering: debug_config.network_editor[0] (NodeNameFilter('layer2.act')) -> layer2.act: "
        "activation_error_method=noclipping, activation_n_bits=6"
    )
    # And the quantized models agree (one pipeline run each).
    a, b = _run(core=_editor(*rules)), _run(overrides=overrides)
    for la, lb in zip(a.info.layers, b.info.layers, strict=True):
        assert (la.name, la.kind) == (lb.name, lb.kind)
        _same(la, lb)


@needs_mct
def test_mct_final_actions_search_first_in_compat_mode():
    """``ChangeFinal*`` edits come after MCT's search: in compat mode the quantizer gets the
    new bit width while the parameters were searched at the old one; jq's default searches
    at the bit width it quantizes with."""
    core = _editor(
        ne.EditRule(
            filter=ne.NodeNameFilter("fc"),
            action=ne.ChangeFinalActivationQuantConfigAttr(activation_n_bits=4),
        ),
        ne.EditRule(
            filter=ne.NodeNameFilter("fc"),
            action=ne.ChangeFinalWeightsQuantConfigAttr(attr_name="weight", weights_n_bits=5),
        ),
    )
    mse, pot = jq.ErrorMethod.MSE, jq.QuantizationMethod.POWER_OF_TWO
    sym = jq.QuantizationMethod.SYMMETRIC
    compat = _resolve(core, compat=True)
    assert compat.act("fc") == ActConfig(mse, 4, pot, 8)
    assert compat.kernel("fc") == KernelConfig(mse, 5, sym, True, 8)
    default = _resolve(core)
    assert default.act("fc") == ActConfig(mse, 4, pot, 4)
    assert default.kernel("fc") == KernelConfig(mse, 5, sym, True, 5)


@needs_mct
def test_bit_width_config_then_editor_then_overrides():
    bwc = mct.core.BitWidthConfig()
    bwc.set_manual_activation_bit_width([ne.NodeNameFilter("fc"), ne.NodeNameFilter("x")], [4, 6])
    bwc.set_manual_weights_bit_width(ne.NodeTypeFilter(Conv2d), 2, "weight")
    editor = mct.core.DebugConfig(
        network_editor=[
            ne.EditRule(filter=ne.NodeNameFilter("layer2.conv"), action=_weights(weights_n_bits=4))
        ]
    )
    core = jq.core.CoreConfig(
        bit_width_config=bwc, debug_config=editor, overrides={"x": {"activation_n_bits": 7}}
    )
    s = _resolve(core)
    assert (s.act("fc").n_bits, s.act("x").n_bits, s.act("pool").n_bits) == (4, 7, 8)
    bits = {k: c.n_bits for k, c in s.kernel_configs.items()}
    assert bits == {"layer1.conv": 2, "layer2.conv": 4, "fc": 8}
    assert [r.source for r in core.rules][:2] == [
        "bit_width_config.manual_activation_bit_width_selection_list[0] (NodeNameFilter('fc'))",
        "bit_width_config.manual_activation_bit_width_selection_list[1] (NodeNameFilter('x'))",
    ]
    bad = mct.core.BitWidthConfig()
    bad.set_manual_weights_bit_width(ne.NodeNameFilter("fc"), 4, "bias")
    with pytest.raises(ValueError, match="'bias' is not quantized by jq"):
        jq.core.CoreConfig(bit_width_config=bad)
    # MCT's unset defaults still mean "off".
    plain = jq.core.CoreConfig(
        bit_width_config=mct.core.BitWidthConfig(), debug_config=mct.core.DebugConfig()
    )
    assert plain.rules == ()


@needs_mct
def test_mct_actions_jq_does_not_apply_are_refused():
    from model_compression_toolkit.core.common.network_editors import actions

    def refused(action, match):
        with pytest.raises(ValueError, match=match):
            _editor(ne.EditRule(filter=ne.NodeNameFilter("fc"), action=action))

    refused(
        ne.ChangeQuantizationParamFunction(activation_quantization_params_fn=print),
        "ChangeQuantizationParamFunction is not supported by jq: custom parameter functions",
    )
    refused(
        actions.ChangeFinalActivationQuantizationMethod(None),
        "swaps the quantizer after the parameters were chosen",
    )
    refused(actions.ReplaceLayer(object, print), "ReplaceLayer is not supported by jq")
    refused(
        ne.ChangeCandidatesActivationQuantConfigAttr(z_threshold=3.0),
        r"\(z_threshold=...\) is not supported: jq has no per-node setting",
    )
    refused(
        ne.ChangeFinalActivationQuantConfigAttr(activation_error_method=EM.KL),
        "a ChangeFinal action comes after",
    )
    refused(
        ne.ChangeCandidatesWeightsQuantConfigAttr(weights_n_bits=4),
        "attr_name=None: MCT sets the field on the node's weights config",
    )
    refused(_weights(weights_quantization_method=None), "weights_quantization_method=")
    refused(ne.ChangeCandidatesActivationQuantConfigAttr(), "sets nothing")
    with pytest.raises(ValueError, match="unknown node filter NodeEdgeFilter"):

        class NodeEdgeFilter:
            pass

        _editor(ne.EditRule(filter=NodeEdgeFilter(), action=_weights(weights_n_bits=4)))
    with pytest.raises(ValueError, match="debug_config.analyze_similarity=True is not supported"):
        jq.core.CoreConfig(debug_config=mct.core.DebugConfig(analyze_similarity=True))
    mp = mct.core.MixedPrecisionQuantizationConfig(num_of_images=4)
    mp.set_mixed_precision_enable()
    with pytest.raises(ValueError, match="mixed_precision_config is not supported"):
        jq.core.CoreConfig(mixed_precision_config=mp)
