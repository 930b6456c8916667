"""The generated single-output backward and attach (`lucid/runtime/_fastgrad.py`): the same
gradients as the generic `_backward_one` (bitwise) and as eager, with the tape's semantics."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.runtime import _fastgrad
from tests.models import SeedModel

pytestmark = pytest.mark.needs_cc

F32 = {"rtol": 2e-6, "atol": 1e-6}


def x_of(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3)).astype(np.float32)


def grads(model: nn.Module) -> dict[str, np.ndarray | None]:
    """The params' grads by name, then cleared."""
    out = {name: p.grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = None
    return out


def trio(dynamic: bool = False, module: type = SeedModel):
    """(model, compiled with the generated backward, compiled without it, eager twin)."""
    lucid.random.seed(5)
    model, twin = module(), module()
    twin.load_state_dict(model.state_dict())
    fast = lucid.compile(model, dynamic_batch=dynamic)
    slow = lucid.compile(model, dynamic_batch=dynamic)
    return model, fast, slow, twin


def disable_fast(monkeypatch) -> None:
    """Compiles from now on get no generated backward (hence no generated attach)."""
    monkeypatch.setattr(_fastgrad, "make_backward_one", lambda *args: None)


def steps(run, x, *, twice: bool = True, loss=lambda y: y.sum()) -> None:
    """One or two backward calls (accumulating) through `run`."""
    for _ in range(2 if twice else 1):
        loss(run(x)).backward()


def bitwise(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        assert (value is None) == (b[name] is None), name
        if value is not None:
            assert value.dtype == b[name].dtype and np.array_equal(value, b[name]), name


def close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        assert (value is None) == (b[name] is None), name
        if value is not None:
            np.testing.assert_allclose(value, b[name], **F32, err_msg=name)


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize(
    "loss",
    [
        lambda y: y.sum(),  # a broadcast (non-contiguous) cotangent
        lambda y: y,  # ones-seeded directly
        lambda y: nn.functional.mse_loss(y, lucid.Tensor(np.ones(y.shape, np.float32))),
    ],
    ids=["sum", "direct", "mse"],
)
def test_fast_backward_matches_generic_bitwise_and_eager(monkeypatch, dynamic, loss):
    model, fast, _, twin = trio(dynamic)
    x = lucid.Tensor(x_of(4))
    y = fast(x)
    y = fast(x)  # the second call goes through the generated forward fast path
    assert y._backward.func is fast.entry().grad._fast_one is not None
    del y
    steps(fast, x, loss=loss)  # two calls: accumulation
    got = grads(model)
    disable_fast(monkeypatch)
    slow = lucid.compile(model, dynamic_batch=dynamic)
    slow(x), slow(x)
    assert slow(x)._backward.func == slow.entry().grad._backward_one
    steps(slow, x, loss=loss)
    bitwise(got, grads(model))
    steps(twin, x, loss=loss)
    close(got, grads(twin))


def test_input_requiring_grad_and_keep_grad(monkeypatch):
    model, fast, _, twin = trio()
    xs = [lucid.Tensor(x_of(2, 1), requires_grad=True) for _ in range(3)]
    for _ in range(2):
        y = fast(xs[0])
        y.keep_grad = True
        (y * 3.0).sum().backward()
    assert fast.entry().grad._fast_one is not None
    got, got_y, got_x = grads(model), y.grad, xs[0].grad
    disable_fast(monkeypatch)
    slow = lucid.compile(model)
    for _ in range(2):
        ys = slow(xs[1])
        ys.keep_grad = True
        (ys * 3.0).sum().backward()
    assert ys._backward.func == slow.entry().grad._backward_one
    bitwise(got, grads(model))
    assert np.array_equal(got_x, xs[1].grad) and np.array_equal(got_y, ys.grad)
    for _ in range(2):
        ye = twin(xs[2])
        ye.keep_grad = True
        (ye * 3.0).sum().backward()
    close(got, grads(twin))
    np.testing.assert_allclose(got_x, xs[2].grad, **F32)
    np.testing.assert_allclose(got_y, ye.grad, **F32)
    np.testing.assert_allclose(got_y, np.full((2, 2), 3.0, np.float32))  # the last call's output


@pytest.mark.slow
def test_explicit_cotangents_of_other_layouts_and_dtypes():
    model, fast, _, twin = trio()
    x = lucid.Tensor(x_of(3))
    g = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(3, 2))  # not C-contiguous
    fast(x).backward(g)
    fast(x).backward(g.astype(np.float64))  # cast to the output's dtype by the tape
    twin(x).backward(g)
    twin(x).backward(g.astype(np.float64))
    close(grads(model), grads(twin))


class ScalarOut(nn.Module):
    """A 0-d output: eager arithmetic on it hands the backward a NumPy scalar cotangent."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x).sum()


@pytest.mark.slow
def test_numpy_scalar_cotangent_of_a_0d_output():
    model, fast, _, twin = trio(module=ScalarOut)
    x = lucid.Tensor(x_of(2))
    for run in (fast, fast, twin, twin):
        y = run(x)
        assert y.shape == ()
        (y * 2.0 + 1.0).backward()
    got, want = grads(model), grads(twin)
    close(got, want)
    assert all(v is not None for v in got.values())


def test_non_contiguous_saved_input_takes_the_generic_backward():
    model, fast, _, twin = trio()
    base = np.ascontiguousarray(x_of(4).T)  # x = base.T: a non-contiguous array
    x = lucid.Tensor(x_of(4))
    x.data = base.T
    y = fast(x)
    assert y._backward.func == fast.entry().grad._backward_one
    y.sum().backward()
    twin(x).sum().backward()
    close(grads(model), grads(twin))


def test_empty_batch_goes_to_the_generic_backward():
    model, fast, _, twin = trio(dynamic=True)
    fast(lucid.Tensor(x_of(2))).sum().backward()
    grads(model)
    x = lucid.Tensor(np.zeros((0, 3), np.float32))
    fast(x).sum().backward()
    twin(x).sum().backward()
    got = grads(model)
    close(got, grads(twin))
    assert all(v is not None and not v.any() for v in got.values())


class TupleOut(nn.Module):
    """One output returned in a tuple: the generated attach keeps the return kind."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return (nn.functional.hardswish(self.fc(x)),)


@pytest.mark.slow
def test_single_output_in_a_tuple_and_frozen_param():
    model, fast, _, twin = trio(module=TupleOut)
    model.fc.bias.requires_grad = twin.fc.bias.requires_grad = False
    x = lucid.Tensor(x_of(3))
    for run in (fast, fast, fast, twin, twin, twin):
        out = run(x)
        assert type(out) is tuple and len(out) == 1
        out[0].sum().backward()
    got = grads(model)
    assert got["fc.bias"] is None
    close(got, grads(twin))
    assert fast.entry().grad._fast_one is not None


def test_generated_source_holds_only_indices_and_fixed_names():
    model, fast, _, _ = trio(dynamic=True)
    fast(lucid.Tensor(x_of(2))).sum().backward()
    plan = fast.entry().grad.plan
    src = _fastgrad.backward_one_source(plan) + _fastgrad.attach_one_source(plan)
    for name, _ in model.named_parameters():
        assert name not in src
    assert "n = " in src and "shape[0]" in src  # the batch is bound from an input at run time
