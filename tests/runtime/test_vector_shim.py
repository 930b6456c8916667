"""The shim's entry points for many arrays (emit_c.VECTOR_ARITY): past that many, the C takes the
arrays' addresses as one array (PREFIX_call_vector*) instead of one argument each, which cffi's
wrappers made gcc spend seconds on. Every way lucid calls a compiled graph (a forward with
prepacked weights, a forward and backward, a whole training step writing parameters back)
must give eager's results through it, and a wrong count of addresses is refused by the C."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import nn, optim
from lucid.codegen.emit_c import VECTOR_ARITY
from lucid.errors import InputError
from lucid.runtime.backends import SHIM_CHANGED

pytestmark = pytest.mark.needs_cc

LAYERS = 34  # 68 parameters, past VECTOR_ARITY with the input and output
F64 = {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LUCID_CACHE_DIR", str(tmp_path / "cache"))


def deep(dtype: type = np.float64) -> nn.Module:
    lucid.random.seed(7)
    layers: list[nn.Module] = []
    for _ in range(LAYERS):
        layers += [nn.Linear(6, 6, dtype=dtype), nn.HardSwish()]
    return nn.Sequential(*layers)


def data(rows: int = 5) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((rows, 6))


def executable(cm: lucid.CompiledModule):
    (entry,) = cm._order
    return entry.forward


def test_a_forward_of_many_arrays_uses_the_vector_entry_points() -> None:
    model = deep().eval()
    x = data()
    with lucid.no_grad():
        want = model(lucid.Tensor(x)).data
        cm = lucid.compile(model)
        got = cm(x).data
        again = cm(x).data  # the fast path, weights prepacked
    np.testing.assert_allclose(got, want, **F64)
    np.testing.assert_array_equal(again, got)
    ex = executable(cm)
    assert 2 * LAYERS + 2 > VECTOR_ARITY
    assert hasattr(ex.lib, f"{ex.prefix}_call_vector")
    assert not hasattr(ex.lib, f"{ex.prefix}_call_objects")


def test_a_small_graph_keeps_one_argument_per_array() -> None:
    model = nn.Sequential(nn.Linear(6, 3, dtype=np.float64)).eval()
    with lucid.no_grad():
        cm = lucid.compile(model)
        cm(data())
    ex = executable(cm)
    assert hasattr(ex.lib, f"{ex.prefix}_call_objects")
    assert not hasattr(ex.lib, f"{ex.prefix}_call_vector")


def test_forward_and_backward_of_many_arrays_match_eager() -> None:
    x = data()
    eager, compiled = deep(), deep()
    F.mse_loss(eager(lucid.Tensor(x)), lucid.Tensor(np.ones((5, 6)))).backward()
    cm = lucid.compile(compiled)
    F.mse_loss(cm(lucid.Tensor(x)), lucid.Tensor(np.ones((5, 6)))).backward()
    for p, q in zip(eager.parameters(), compiled.parameters(), strict=True):
        np.testing.assert_allclose(q.grad.data, p.grad.data, **F64)


def test_a_training_step_of_many_arrays_writes_the_parameters_back() -> None:
    x, target = lucid.Tensor(data()), lucid.Tensor(np.ones((5, 6)))
    models = deep(), deep()
    opts = [optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in models]

    def stepper(model: nn.Module, opt: optim.Optimizer):
        def step(x: lucid.Tensor, target: lucid.Tensor) -> lucid.Tensor:
            opt.zero_grad()
            loss = F.mse_loss(model(x), target)
            loss.backward()
            opt.step()
            return loss

        return step

    eager = stepper(models[0], opts[0])
    compiled = lucid.compile(stepper(models[1], opts[1]))
    for _ in range(3):
        np.testing.assert_allclose(compiled(x, target).data, eager(x, target).data, **F64)
    for p, q in zip(*(m.parameters() for m in models), strict=True):
        np.testing.assert_allclose(q.data, p.data, **F64)


def test_a_wrong_count_of_addresses_is_refused_by_the_c() -> None:
    model = deep().eval()
    x = data()
    with lucid.no_grad():
        cm = lucid.compile(model)
        y = cm(x).data
    ex = executable(cm)
    params = [p.data for p in model.parameters()]
    ids = [id(x), *map(id, params), id(np.empty_like(y))]
    internal = 6  # LUCID_E_INTERNAL: nothing is read past the array of addresses
    assert ex.call_objects(*ids[:-1], 5, 1) == internal
    assert ex.call_objects(*ids, 0, 5, 1) == internal
    out = np.empty_like(y)
    assert ex.call_objects(*ids[:-1], id(out), 5, 1) == 0
    np.testing.assert_array_equal(out, y)


@pytest.mark.parametrize("layers", [1, LAYERS], ids=["objects", "vector"])
def test_a_parameter_reshaped_in_place_is_refused_by_the_shim_before_anything_runs(layers):
    lucid.random.seed(7)
    model = nn.Sequential(*(nn.Linear(6, 6, dtype=np.float64) for _ in range(layers))).eval()
    x = data()
    cm = lucid.compile(model)
    with lucid.no_grad():
        want = cm(x).data
        cm(x)  # the fast path, from here on
    ex = executable(cm)
    assert hasattr(ex.lib, f"{ex.prefix}_call_vector") == (layers == LAYERS)
    (entry,) = cm._order
    assert entry.pcache is not None
    ids = entry.pcache[1]
    w = model[0].weight.data
    w.shape = (3, 12)  # the same array object: only its shape says it changed
    y = np.full((5, 6), 7.0)
    table = 0 if entry.packed is None else id(entry.packed.table)
    # the C refuses before running (the output is untouched) ...
    assert ex.call_objects_packed(id(x), *ids, id(y), table, 5, 1) == SHIM_CHANGED
    assert (y == 7.0).all()
    # ... and the model call, after the fast path hands it to the checked path, says why
    with lucid.no_grad(), pytest.raises(InputError, match=r"expected f64\[6,6\], got f64\[3,12\]"):
        cm(x)
    w.shape = (6, 6)
    with lucid.no_grad():
        np.testing.assert_array_equal(cm(x).data, want)
