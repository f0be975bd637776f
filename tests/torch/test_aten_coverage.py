"""Core ATen coverage, op by op, over the table in ``jq_torch._coverage``: every overload of
torch's Core ATen opset is in the table; each converting op, called alone on random inputs,
appears in the exported graph and matches torch eager in jq jitted (all ops in one compiled
program) and in ``to_torch`` (the jq ops' torch twins), and, under ``slow``, in jq eager and
jitted op by op (float outputs:
max abs diff <= 1e-4 * max(1, max |torch output|), float32; integer and boolean outputs:
equal); each refused op raises ``UnsupportedOpError`` with the table's reason. The generated
page ``docs/reference/aten-coverage.md`` equals the committed one.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
from _helpers import Fn  # noqa: E402

import jq_torch  # noqa: E402
from jq import apply  # noqa: E402
from jq_torch import _coverage, coverage  # noqa: E402

RTOL = 1e-4
PAGE = Path(__file__).parents[2] / "docs" / "reference" / "aten-coverage.md"

_jit_apply = jax.jit(apply, static_argnums=0)


def _ids(entries):
    return [e.op.removeprefix("aten.") for e in entries]


CONVERTING = [e for e in _coverage.TABLE.values() if e.status != "refused" and e.recipe]
REFUSED = [e for e in _coverage.TABLE.values() if e.status == "refused" and e.recipe]


def _module(entry):
    fn, inputs = entry.recipe()
    model = fn if isinstance(fn, torch.nn.Module) else Fn(fn)
    return model.eval(), inputs


class _Converted(NamedTuple):
    seen: set[str]  # the ops of the exported program(s) that from_torch converted
    graph: Any
    params: Any
    xs: list[np.ndarray]
    want: Any  # torch's output


def _from_torch(model, inputs, seen: set[str]):
    """``from_torch``, adding the ops of every exported program it converts to ``seen``."""
    convert = jq_torch._convert._convert

    def spy(ep, *args, **kwargs):
        seen.update(str(n.target) for n in ep.graph.nodes if n.op == "call_function")
        return convert(ep, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jq_torch._convert, "_convert", spy)
        return jq_torch.from_torch(model, inputs)


def _convert(entry) -> _Converted:
    """``from_torch`` on the entry's recipe, recording the ops of the program it converted."""
    model, inputs = _module(entry)
    seen: set[str] = set()
    graph, params = _from_torch(model, inputs, seen)
    with torch.no_grad():
        want = model(*inputs)
    return _Converted(seen, graph, params, [x.numpy() for x in inputs], want)


@pytest.fixture(scope="module")
def converted() -> dict[str, Any]:
    """Every converting entry converted once, and all of them run by ONE jitted program (one
    compilation instead of one per op: 14 s against 30 s on 2 cores): op -> (conversion, jitted
    output), or op -> the exception."""
    out: dict[str, Any] = {}
    for e in CONVERTING:
        try:
            out[e.op] = _convert(e)
        except Exception as err:  # reported by the op's own test
            out[e.op] = err
    ok = [op for op, c in out.items() if isinstance(c, _Converted)]
    graphs = tuple(out[op].graph for op in ok)

    @partial(jax.jit, static_argnums=0)
    def run_all(graphs, params, xs):
        return [apply(g, p, *x) for g, p, x in zip(graphs, params, xs, strict=True)]

    results = run_all(graphs, [out[op].params for op in ok], [out[op].xs for op in ok])
    return {op: (out[op], res) for op, res in zip(ok, results, strict=True)} | {
        op: c for op, c in out.items() if not isinstance(c, _Converted)
    }


def _flat(out) -> list[np.ndarray]:
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _flat(o)]
    return [out.detach().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)]


def _assert_close(got, want, what):
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want), what
    for g, w in zip(got, want, strict=True):
        g = np.asarray(g)
        assert g.shape == w.shape, (what, g.shape, w.shape)
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g.astype(w.dtype), w, err_msg=what)
        else:
            tol = RTOL * max(1.0, float(np.max(np.abs(w), initial=0.0)))
            np.testing.assert_allclose(g, w, rtol=0, atol=tol, err_msg=what)


def test_table_covers_every_core_aten_overload():
    core = set(_coverage.core_ops())
    assert len(core) > 150  # torch 2.14 publishes 189
    assert core <= set(_coverage.TABLE), sorted(core - set(_coverage.TABLE))
    for e in _coverage.TABLE.values():
        assert e.status in ("converts", "folded", "refused"), e
        assert (e.status == "refused") == bool(e.kind), e
        assert e.status == "refused" or e.recipe or e.op.startswith("aten.sym_"), e


@pytest.mark.parametrize("entry", CONVERTING, ids=_ids(CONVERTING))
def test_op_converts_and_matches_torch_jitted(entry, converted):
    result = converted[entry.op]
    if isinstance(result, Exception):
        raise result
    conv, jitted = result
    assert entry.op in conv.seen, sorted(conv.seen)
    _assert_close(jitted, conv.want, f"{entry.op} jit")
    # and back in torch: the twins of the jq ops it became (what a quantized model runs)
    module = jq_torch.to_torch(conv.graph, conv.params)
    with torch.no_grad():
        _assert_close(module(*map(torch.from_numpy, conv.xs)), conv.want, f"{entry.op} to_torch")


@pytest.mark.slow
@pytest.mark.parametrize("entry", CONVERTING, ids=_ids(CONVERTING))
def test_op_matches_torch_eagerly(entry):
    conv = _convert(entry)
    assert entry.op in conv.seen
    _assert_close(apply(conv.graph, conv.params, *conv.xs), conv.want, f"{entry.op} eager")
    _assert_close(_jit_apply(conv.graph, conv.params, *conv.xs), conv.want, f"{entry.op} jit")


@pytest.mark.parametrize("entry", REFUSED, ids=_ids(REFUSED))
def test_refused_op_raises_with_its_reason(entry):
    model, inputs = _module(entry)
    seen: set[str] = set()
    with pytest.raises(jq_torch.UnsupportedOpError) as info:
        _from_torch(model, inputs, seen)
    assert entry.op in seen, sorted(seen)
    assert entry.op in {u.op for u in info.value.ops}
    assert entry.reason in str(info.value)


def test_refused_ops_without_a_recipe_report_their_reason():
    from jq_torch._convert import _hint, _lookup

    for e in _coverage.TABLE.values():
        if e.status == "refused" and not e.recipe:
            target = eval("torch.ops." + e.op)  # noqa: S307  (an op name from the table)
            assert _lookup(target) is None, e.op
            assert _hint(e.op) == e.reason, e.op


def test_every_core_op_with_a_jax_equivalent_converts():
    f = coverage.figures()
    assert f.total == len(_coverage.core_ops())
    assert f.converted == f.with_equivalent, [e.op for e in _coverage.CORE if e.kind == "todo"]


def test_coverage_page_is_up_to_date():
    assert PAGE.read_text() == coverage.render(), (
        "regenerate with: python -m jq_torch.coverage --write docs/reference/aten-coverage.md"
    )
