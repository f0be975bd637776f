"""Layer-wise Hessian scores (``jq/_src/ptq/layer_hessian.py``) against NumPy, and the
``weights_hessian`` option of PTQ."""

import itertools

import numpy as np
import pytest

import jq
import jq.core
import jq.ptq
from jq._src.ptq.layer_hessian import accumulate_scores, layer_scores


def _linear_graph():
    g = jq.Graph(
        inputs=("x",),
        nodes=(jq.Node("fc1", "linear", ("x",)), jq.Node("fc2", "linear", ("fc1",))),
        outputs=("fc2",),
    )
    rng = np.random.default_rng(0)
    p = {
        "fc1": {
            "weight": rng.standard_normal((6, 5)).astype(np.float32),
            "bias": rng.standard_normal(6).astype(np.float32),
        },
        "fc2": {"weight": rng.standard_normal((3, 6)).astype(np.float32)},
    }
    return g, p


def _np_conv_scores(x, w_shape, stride, padding, dilation, groups):
    """Plain loops: every patch element the conv multiplies with weight[o, c, *tap]."""
    n, c_in, h, wd = x.shape
    o, cg, kh, kw = w_shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), padding[0], padding[1]))
    oh = (xp.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (xp.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros(w_shape)
    for oc, ci, i, j in itertools.product(range(o), range(cg), range(kh), range(kw)):
        c = (oc // (o // groups)) * cg + ci
        total = 0.0
        for b, y, z in itertools.product(range(n), range(oh), range(ow)):
            v = xp[b, c, y * stride[0] + i * dilation[0], z * stride[1] + j * dilation[1]]
            total += v * v
        out[oc, ci, i, j] = total / (n * oh * ow)
    return out


def test_linear_scores_match_numpy_mean_square_over_rows():
    g, p = _linear_graph()
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((n, 4, 5)).astype(np.float32) for n in (3, 3, 2)]
    got = layer_scores(g, p, [(x,) for x in xs], ["fc1", "fc2"])
    rows = np.concatenate(xs).reshape(-1, 5).astype(np.float64)
    want1 = np.broadcast_to(np.mean(rows**2, axis=0), (6, 5))
    h = rows @ p["fc1"]["weight"].T.astype(np.float64) + p["fc1"]["bias"]
    want2 = np.broadcast_to(np.mean(h**2, axis=0), (3, 6))
    np.testing.assert_allclose(np.asarray(got["fc1"]), want1, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got["fc2"]), want2, rtol=1e-5)


def test_golden_values():
    # Hand-computed: rows (1, 2, 0), (3, 0, 1) -> mean squares (5, 2, 0.5).
    g, p = _linear_graph()
    x = np.array([[1.0, 2.0, 0.0, 0.0, 0.0], [3.0, 0.0, 1.0, 0.0, 0.0]], np.float32)
    got = np.asarray(layer_scores(g, p, [(x,)], ["fc1"])["fc1"])
    np.testing.assert_array_equal(got[0], [5.0, 2.0, 0.5, 0.0, 0.0])
    np.testing.assert_array_equal(got, np.broadcast_to(got[0], (6, 5)))


@pytest.mark.parametrize(
    ("groups", "stride", "padding", "dilation"),
    [(1, (1, 1), ((1, 1), (1, 1)), (1, 1)), (2, (2, 1), ((0, 1), (2, 0)), (1, 2))],
)
def test_conv_scores_match_numpy_patches(groups, stride, padding, dilation):
    g = jq.Graph(
        inputs=("x",),
        nodes=(
            jq.Node(
                "c",
                "conv",
                ("x",),
                attrs=(
                    ("stride", stride),
                    ("padding", padding),
                    ("dilation", dilation),
                    ("groups", groups),
                ),
            ),
        ),
        outputs=("c",),
    )
    w_shape = (4, 4 // groups, 3, 2)
    p = {"c": {"weight": np.ones(w_shape, np.float32), "bias": np.zeros(4, np.float32)}}
    x = np.random.default_rng(2).standard_normal((3, 4, 7, 6)).astype(np.float32)
    got = np.asarray(layer_scores(g, p, [(x[:2],), (x[2:],)], ["c"])["c"])
    want = _np_conv_scores(x, w_shape, stride, padding, dilation, groups)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_batches_run_at_two_shapes_at_most():
    g, p = _linear_graph()
    seen = []

    def graph_for(shapes):
        seen.append(shapes[0][0])
        return g

    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((n, 5)).astype(np.float32) for n in (4, 9, 2, 4)]
    got = accumulate_scores(graph_for, p, [(x,) for x in xs], ["fc1"])
    assert set(seen) == {4, 1}
    want = np.mean(np.concatenate(xs).astype(np.float64) ** 2, axis=0)
    np.testing.assert_allclose(np.asarray(got["fc1"])[0], want, rtol=1e-5)


def test_bad_layers_are_named():
    g, p = _linear_graph()
    x = np.ones((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"\['nope'\] are not nodes"):
        layer_scores(g, p, [(x,)], ["nope"])
    with pytest.raises(ValueError, match="no batches"):
        layer_scores(g, p, [], ["fc1"])
    gt = jq.Graph(
        inputs=("x",),
        nodes=(
            jq.Node(
                "t",
                "conv_transpose",
                ("x",),
                attrs=(
                    ("stride", (1,)),
                    ("padding", ((0, 0),)),
                    ("dilation", (1,)),
                    ("groups", 1),
                    ("output_padding", (0,)),
                ),
            ),
        ),
        outputs=("t",),
    )
    pt = {"t": {"weight": np.ones((2, 3, 1), np.float32)}}
    with pytest.raises(ValueError, match=r"'t' \(conv_transpose\).*weights_hessian='model'"):
        layer_scores(gt, pt, [(np.ones((1, 2, 4), np.float32),)], ["t"])


def test_config_option_is_checked():
    qc = jq.core.QuantizationConfig(weights_hessian="layer")
    assert qc.weights_hessian.value == "layer"
    assert jq.core.QuantizationConfig().weights_hessian.value == "model"
    with pytest.raises(ValueError, match="weights_hessian: unknown value 'diag'"):
        jq.core.QuantizationConfig(weights_hessian="diag")
    with pytest.raises(ValueError, match="mct_compat=True"):
        jq.core.QuantizationConfig(weights_hessian="layer", mct_compat=True)


def test_ptq_layer_hessian_uses_the_layers_inputs():
    """quantize_graph with weights HMSE and weights_hessian="layer": every kernel's threshold
    equals the functional search's with the NumPy layer scores over all the data."""
    g, p = _linear_graph()
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((8, 5)).astype(np.float32) * s for s in (1.0, 3.0, 0.5)]
    qc = jq.core.QuantizationConfig(
        weights_error_method="hmse", weights_hessian="layer", weights_bias_correction=False
    )
    tp = jq.core.TargetPlatform(weights_n_bits=4, quantize_activations=False)
    res = jq.ptq.quantize_graph(
        g,
        p,
        lambda: ([x] for x in xs),
        core_config=jq.core.CoreConfig(quantization_config=qc, progress=False),
        target_platform=tp,
    )
    rows = np.concatenate(xs).astype(np.float64)
    h = rows @ p["fc1"]["weight"].T + p["fc1"]["bias"]
    for name, inp in (("fc1", rows), ("fc2", h)):
        w = p[name]["weight"]
        scores = np.broadcast_to(np.mean(inp**2, axis=0), w.shape).astype(np.float32)
        want = jq.weights_qparams(w, n_bits=4, error_method="hmse", hessian=scores)
        (layer,) = [q for q in res.info.layers if q.name == name and q.kind == "weights"]
        np.testing.assert_allclose(np.ravel(layer.threshold), np.ravel(want.threshold), rtol=1e-6)
