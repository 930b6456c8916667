"""The generated fast path of a compiled training step (lucid/runtime/_faststep.py).

After the first call, a compiled step runs through a small generated function that checks the
guards one by one and has the C copy the new parameters into their arrays. These tests check
that it serves the calls it should, that it gives bit for bit what the general path
(`StepEntry.run`) gives, and that each guard, seen only by the fast path's own checks, still
recompiles or refuses as the general path does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import lucid
import lucid.optim
from lucid.errors import LucidError, RecompileWarning
from lucid.runtime import step as step_module
from tests.step.test_step import F64, OPTIMIZERS, convnet, data, make_step, mlp

pytestmark = pytest.mark.needs_cc


def _run(
    make_model: Callable[[], Any],
    make_opt: Callable[[Any], Any],
    batches: list[tuple[np.ndarray, np.ndarray]],
    compiled: bool,
) -> tuple[list[np.ndarray], dict[str, np.ndarray], dict[str, Any], Any]:
    model = make_model()
    opt = make_opt(model.parameters())
    fn = make_step(model, opt)
    if compiled:
        fn = lucid.compile(fn)
    losses = [fn(lucid.Tensor(x), lucid.Tensor(y)).data.copy() for x, y in batches]
    return losses, model.state_dict(), opt.state_dict(), fn


def _assert_identical(a: Any, b: Any) -> None:
    (l0, s0, o0, _), (l1, s1, o1, _) = a, b
    np.testing.assert_array_equal(np.array(l1), np.array(l0))
    for k in s0:
        np.testing.assert_array_equal(s1[k], s0[k], err_msg=k)
    assert o0["param_groups"] == o1["param_groups"]
    for i, st in o0["state"].items():
        for k, v in st.items():
            np.testing.assert_array_equal(o1["state"][i][k], v, err_msg=f"state {i}.{k}")


@pytest.mark.parametrize(
    ("model", "opt"),
    [
        ("mlp", "sgd"),
        ("mlp", "sgd-momentum"),
        ("mlp", "sgd-nesterov-decay"),
        ("mlp", "adam-decay"),
        ("mlp", "adamw"),
        ("convnet", "sgd-dampening"),  # BatchNorm: running statistics copied back by the C
        ("convnet", "adam"),
    ],
)
def test_fast_path_serves_repeat_calls_bit_for_bit(monkeypatch, model, opt):
    make_model = {"mlp": mlp, "convnet": convnet}[model]
    shape, classes = ((13,), 5) if model == "mlp" else ((2, 5, 6), 4)
    batches = data(np.float32, 4, rows=3, shape=shape, classes=classes)

    def f32() -> Any:
        return make_model(np.float32)

    general_runs = []
    real_run = step_module.StepEntry.run

    def counted(self, arrays):
        general_runs.append(1)
        return real_run(self, arrays)

    monkeypatch.setattr(step_module.StepEntry, "run", counted)
    fast = _run(f32, OPTIMIZERS[opt], batches, compiled=True)
    # dampened SGD builds its first step apart (no momentum buffer yet): two general calls
    assert len(general_runs) == (2 if opt == "sgd-dampening" else 1)
    monkeypatch.setattr(step_module, "make_step_fast", lambda entry, owner: None)
    general = _run(f32, OPTIMIZERS[opt], batches, compiled=True)
    assert len(general_runs) == (2 if opt == "sgd-dampening" else 1) + len(batches)
    _assert_identical(general, fast)
    eager = _run(f32, OPTIMIZERS[opt], batches, compiled=False)
    for got, want in zip(fast[0], eager[0]):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def _twin(between: Callable[[Any, Any, int], Any], steps: int = 5, opt: str = "sgd-momentum"):
    """Eager and compiled runs of the same steps; `between(model, opt, k)` runs before step k
    in both and may return the x to pass (else the batch's own)."""
    batches = data(np.float64, steps)
    results = []
    for compiled in (False, True):
        model = mlp()
        optimizer = OPTIMIZERS[opt](model.parameters())
        fn = make_step(model, optimizer)
        if compiled:
            fn = lucid.compile(fn)
        losses = []
        for k, (x, y) in enumerate(batches):
            given = between(model, optimizer, k)
            losses.append(fn(x if given is None else given, y).data.copy())
        results.append((losses, model.state_dict(), optimizer.state_dict(), fn))
    (l0, s0, _, _), (l1, s1, _, fn) = results
    np.testing.assert_allclose(np.array(l1), np.array(l0), **F64)
    for key in s0:
        np.testing.assert_allclose(s1[key], s0[key], err_msg=key, **F64)
    return fn


def test_replaced_arrays_odd_inputs_and_a_busy_scratch_stay_eagers():
    """What the fast path must hand to the general path (and take back afterwards): a
    parameter given a new array, a changed lr, a Fortran-ordered and a strided input."""
    x_odd = np.asfortranarray(data(np.float64, 5)[3][0])

    def between(model, opt, k):
        if k == 1:
            model[0].weight.data = model[0].weight.data.copy()
        if k == 2:
            opt.param_groups[0]["lr"] = 0.03
        if k == 3:
            return x_odd
        if k == 4:
            return np.repeat(data(np.float64, 5)[4][0], 2, axis=1)[:, ::2]  # strided
        return None

    fn = _twin(between)
    assert fn.compiles == 1


def test_a_call_while_the_scratch_is_busy_allocates_its_own(monkeypatch):
    """A call that finds the entry's scratch taken (a concurrent call of the same step) runs
    the fast path on scratch of its own: bit for bit what a call with the scratch free gives."""
    batches = data(np.float64, 3)
    runs = []
    general: list[int] = []
    real_run = step_module.StepEntry.run

    def counted(self, arrays):
        general.append(1)
        return real_run(self, arrays)

    for busy in (False, True):
        model = mlp()
        opt = OPTIMIZERS["sgd-momentum"](model.parameters())
        fn = lucid.compile(make_step(model, opt))
        for x, y in batches[:2]:
            fn(x, y)
        general.clear()
        monkeypatch.setattr(step_module.StepEntry, "run", counted)
        lock = fn.entry().fast.__globals__["lock"]
        if busy:
            lock.acquire()
        try:
            loss = fn(*batches[2]).data.copy()
        finally:
            if busy:
                lock.release()
        monkeypatch.undo()
        assert not general  # the fast path served the call
        runs.append((loss, model.state_dict()))
    (l0, s0), (l1, s1) = runs
    np.testing.assert_array_equal(l1, l0)
    for key in s0:
        np.testing.assert_array_equal(s1[key], s0[key], err_msg=key)


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        (lambda m, o: m[1].eval(), "train/eval modes"),
        (lambda m, o: setattr(m[2].bias, "requires_grad", False), "require grad"),
        (lambda m, o: o.param_groups[0].update(momentum=0.5), r"\['momentum'\] changed"),
        (lambda m, o: o.param_groups[0].update(extra=1), r"\['extra'\]"),
    ],
)
def test_guards_seen_by_the_fast_path_recompile(change, warning):
    def between(model, opt, k):
        if k == 2:  # the fast path served step 1
            change(model, opt)

    with pytest.warns(RecompileWarning, match=warning):
        fn = _twin(between)  # the same as eager through the change
    assert fn.compiles == 2


def test_gradients_held_before_an_unzeroed_step_are_refused():
    model = mlp()
    opt = lucid.optim.SGD(model.parameters(), lr=0.1)

    def step(x, y):
        loss = lucid.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    ((x, y),) = data(np.float64, 1)
    compiled = lucid.compile(step)
    compiled(x, y)
    compiled(x, y)  # the fast path
    model[0].bias.grad = np.ones(16)
    with pytest.raises(LucidError, match=r"parameter\(s\) \[1\] hold gradients"):
        compiled(x, y)


def test_a_replaced_parameter_retraces_the_step():
    """`layer.bias = Parameter(...)` of the same shape after the first calls: the step graph was
    bound to the old tensor, so the step retraces (eager's forward reads the new bias, which the
    optimizer does not hold: neither is stepped) instead of silently using the old one."""

    def between(model, opt, k):
        if k == 2:
            model[2].bias = lucid.nn.Parameter(np.zeros(5))

    with pytest.warns(RecompileWarning, match="a parameter or buffer of Sequential was replaced"):
        fn = _twin(between)
    assert fn.compiles == 2
