"""The op vocabulary has one home: every op in the table is defined in ``jq._src.graph.ops``."""

import jq  # noqa: F401  (loads the PTQ passes, which use the hooks)
from jq._src.graph import ops


def test_every_registered_op_lives_in_the_ops_package():
    outside = {
        name: fn.__module__
        for name, fn in ops.registered_ops().items()
        if not fn.__module__.startswith("jq._src.graph.ops")
    }
    assert outside == {}


def test_the_package_registers_every_family():
    families = {fn.__module__.rsplit(".", 1)[-1] for fn in ops.registered_ops().values()}
    assert {
        "layers",
        "normalization",
        "activations",
        "pooling",
        "elementwise",
        "_broadcast",
        "reductions",
        "shapes",
        "indexing",
        "resampling",
        "attention",
        "quantization",
        "hooks",
    } <= families
    assert ops.get_op("where") is ops.indexing.where
    assert ops.get_op("ptq_hessian_conv") is ops.hooks._conv_as_dot
    assert ops.get_op("ptq_gate") is ops.quantization.ptq_gate
