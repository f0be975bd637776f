"""Saving a quantized module with ``torch.save`` and reading it back under torch >= 2.6,
whose ``torch.load`` defaults to ``weights_only=True``.

A plain ``torch.load(path)`` cannot return a ``JQModule`` (the weights-only unpickler creates no
object of a class outside torch's list); its error names the two ways that work, and both must
work as written: ``weights_only=False``, or allowlisting ``jq_torch._to_torch.JQModule`` (the
only class in the file). ``JQModule.load`` does the latter.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jq_torch = pytest.importorskip("jq_torch")

from _export_models import CNN  # noqa: E402

import jq  # noqa: E402
import jq.core  # noqa: E402
import jq.ptq  # noqa: E402

JQModule = jq_torch.JQModule


@pytest.fixture(scope="module")
def qmodel():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    batches = [torch.rand(4, 1, 8, 8, generator=g) for _ in range(2)]
    core = jq.core.CoreConfig(progress=False)
    model, _ = jq.ptq.pytorch_post_training_quantization(
        CNN().eval(), lambda: ([b] for b in batches), core_config=core
    )
    return model


@pytest.fixture
def saved(qmodel, tmp_path):
    path = tmp_path / "q.pt"
    torch.save(qmodel, path)
    return path


def _same(loaded, qmodel):
    assert type(loaded) is JQModule and not loaded.training
    assert loaded.graph == qmodel.graph and loaded.quant_layers == qmodel.quant_layers
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))  # a new batch size
    with torch.no_grad():
        assert torch.equal(loaded(x), qmodel(x))


def test_plain_torch_load_names_what_to_pass(saved):
    """torch's error (1) says ``weights_only=False``, (2) names the one class to allowlist."""
    with pytest.raises(pickle.UnpicklingError) as e:
        torch.load(saved)
    message = str(e.value)
    assert "`weights_only` set to `False`" in message
    assert "safe_globals([jq_torch._to_torch.JQModule])" in message
    assert torch.serialization.get_unsafe_globals_in_checkpoint(saved) == [
        "jq_torch._to_torch.JQModule"
    ]


def _allowlisted():
    """torch's process-wide allowlist (torch's own modules add to it, e.g. torch.export)."""
    return set(torch.serialization.get_safe_globals())


def test_every_way_the_error_names_loads_the_module(saved, qmodel):
    _same(torch.load(saved, weights_only=False), qmodel)
    before = _allowlisted()
    with torch.serialization.safe_globals([jq_torch._to_torch.JQModule]):
        _same(torch.load(saved), qmodel)
    assert _allowlisted() == before


def test_jqmodule_load(saved, qmodel):
    before = _allowlisted()
    _same(JQModule.load(saved), qmodel)
    _same(JQModule.load(str(saved), map_location="cpu"), qmodel)
    assert _allowlisted() == before and JQModule not in before  # nothing left allowlisted
    torch.save({"w": torch.zeros(2)}, saved)
    with pytest.raises(TypeError, match="holds a dict, not a JQModule"):
        JQModule.load(saved)


def test_state_round_trips_attribute_and_record_types(tmp_path):
    """Attribute values and records of the types a graph may hold come back as they were:
    NumPy scalars and arrays (dtype kept), nested tuples, inf, None; copy.deepcopy too."""
    graph = jq.Graph(
        "x",
        [
            jq.Node("a", "leaky_relu", ["x"], {"negative_slope": np.float32(0.25)}),
            jq.Node("b", "hardtanh", ["a"], {"min_val": -np.inf, "max_val": 6.0}),
            jq.Node("c", "pad", ["b"], {"padding": ((0, 0), (1, 1), (0, 0)), "value": 0.0}),
        ],
        "c",
        input_shapes=[(-1, 4, 4)],
    )
    layer = jq.core.LayerInfo(
        name="a",
        kind="activation",
        op="leaky_relu",
        n_bits=16,
        method="symmetric",
        error_method="mse",
        signed=True,
        threshold=np.array([0.5, 1.5], np.float32),
        channel_axis=None,
        sqnr_db=float("inf"),
    )
    module = jq_torch.to_torch(graph, {}, [layer])
    path = tmp_path / "m.pt"
    torch.save(module, path)
    for loaded in (JQModule.load(path), copy.deepcopy(module)):
        assert loaded.graph == graph and loaded.graph.input_shapes == ((-1, 4, 4),)
        slope = loaded.graph.node("a").attr("negative_slope")
        assert type(slope) is np.float32 and slope == np.float32(0.25)
        (got,) = loaded.quant_layers
        assert got.threshold.dtype == np.float32
        np.testing.assert_array_equal(got.threshold, layer.threshold)
        assert got.sqnr_db == float("inf") and got.channel_axis is None
        x = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0))
        assert torch.equal(loaded(x), module(x))


def test_files_saved_before_plain_state_still_load(qmodel, tmp_path, monkeypatch):
    """A file whose state holds the Graph object itself (jq before this change) loads with
    ``weights_only=False`` as it did."""
    path = tmp_path / "old.pt"
    with monkeypatch.context() as m:
        m.setattr(JQModule, "__getstate__", torch.nn.Module.__getstate__)
        torch.save(qmodel, path)
    assert "jq._src.graph.graph.Graph" in torch.serialization.get_unsafe_globals_in_checkpoint(path)
    _same(torch.load(path, weights_only=False), qmodel)
