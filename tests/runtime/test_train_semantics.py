"""Training through lucid.compile: the eager tape's semantics, grad modes and build counts.

One compiled seed model (C, dynamic batch) serves most tests; `prepared` counts its builds.
"""

from __future__ import annotations

import numpy as np
import pytest

import lucid
import lucid.optim
from lucid import nn
from tests.models import SeedModel
from tests.runtime.test_compile_models import count_prepares

pytestmark = pytest.mark.needs_cc

F32 = {"rtol": 2e-6, "atol": 1e-6}


@pytest.fixture(scope="module")
def seed():
    """(model, compiled, list of prepared graphs, eager twin with the same weights)."""
    with pytest.MonkeyPatch.context() as patch:
        prepared = count_prepares(patch, "c")
        lucid.random.seed(11)
        model = SeedModel()
        twin = SeedModel()
        twin.load_state_dict(model.state_dict())
        yield model, lucid.compile(model, dynamic_batch=True), prepared, twin


def pgrads(model: nn.Module, clear: bool = True) -> dict[str, np.ndarray]:
    """The params' grads by name (cleared afterwards unless `clear` is False)."""
    out = {name: p.grad for name, p in model.named_parameters()}
    if clear:
        for p in model.parameters():
            p.grad = None
    return out


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        if value is None:
            assert got[name] is None, name
        else:
            np.testing.assert_allclose(got[name], value, **F32, err_msg=name)


def x_of(batch: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((batch, 3)) * 2).astype(np.float32)


def test_train_mode_grads_accumulate_and_match_eager(seed):
    model, cm, prepared, twin = seed
    x = x_of(4)
    y = cm(lucid.Tensor(x))  # train mode, params require grad: the grad build
    assert y.requires_grad and not y.is_leaf and len(prepared) == 2  # forward + backward
    np.testing.assert_allclose(y.data, twin(lucid.Tensor(x)).data, **F32)
    y.backward()  # ones-seeded, as eager
    once = {k: v.copy() for k, v in pgrads(model, clear=False).items()}
    twin(lucid.Tensor(x)).backward()
    assert_same(once, pgrads(twin, clear=False))
    y.backward()  # saved values stay alive: a second backward accumulates (+=)
    cm(lucid.Tensor(x)).backward()  # and so does a second call
    assert_same(pgrads(model), {k: 3 * v for k, v in once.items()})
    pgrads(twin)
    assert len(prepared) == 2 and cm._fast is not None


def test_loss_computed_eagerly_on_the_output_and_explicit_grad(seed):
    model, cm, prepared, twin = seed
    x, t = x_of(6, 1), x_of(6, 2)[:, :2]
    loss = lucid.nn.functional.mse_loss(cm(lucid.Tensor(x)), lucid.Tensor(t))
    loss.backward()
    lucid.nn.functional.mse_loss(twin(lucid.Tensor(x)), lucid.Tensor(t)).backward()
    assert_same(pgrads(model), pgrads(twin))
    g = x_of(6, 3)[:, :2]
    cm(lucid.Tensor(x)).backward(g)
    twin(lucid.Tensor(x)).backward(g)
    assert_same(pgrads(model), pgrads(twin))
    assert len(prepared) == 2


def test_input_requiring_grad_gets_dx_and_keep_grad(seed):
    model, cm, prepared, twin = seed
    x = x_of(3, 4)
    xs = [lucid.Tensor(x, requires_grad=True) for _ in range(2)]
    outs = [cm(xs[0]), twin(xs[1])]
    for y in outs:
        y.keep_grad = True
        (y * y).sum().backward()
    np.testing.assert_allclose(outs[0].grad, 2 * outs[0].data, **F32)  # keep_grad: dL/dy
    np.testing.assert_allclose(xs[0].grad, xs[1].grad, **F32)
    assert_same(pgrads(model), pgrads(twin))
    # dX through a non-leaf input: x = 2 * leaf, the tape continues past the compiled call
    leaf = lucid.Tensor(x, requires_grad=True)
    cm(leaf * 2.0).sum().backward()
    leaf_e = lucid.Tensor(x, requires_grad=True)
    twin(leaf_e * 2.0).sum().backward()
    np.testing.assert_allclose(leaf.grad, leaf_e.grad, **F32)
    assert_same(pgrads(model), pgrads(twin))
    assert [s.grad for s in cm.signatures] == [(False,), (True,)] and len(prepared) == 4


def test_no_grad_and_eval_use_forward_only_builds(seed):
    model, cm, prepared, twin = seed
    x = x_of(2, 5)
    before = len(prepared)
    with lucid.no_grad():
        y = cm(lucid.Tensor(x))
        y2 = cm(lucid.Tensor(x))  # the fast path of the forward-only entry
    assert not y.requires_grad and not y2.requires_grad
    assert len(prepared) == before + 1  # one forward graph, no backward
    sig = cm.signatures[-1]
    assert sig.training and sig.grad is None
    assert len(cm.stages(sig)["optimized"].outputs) == 1  # no saved values
    cm.eval()
    try:
        # eval + params requiring grad: the forward-only build, with outputs that require grad
        # as in eager; their backward recomputes the call through a grad build
        ye = cm(lucid.Tensor(x))
        assert ye.requires_grad and len(prepared) == before + 2
        model.zero_grad()
        ye.sum().backward()
        assert len(prepared) == before + 4
        late = pgrads(model)
        model.zero_grad()
        twin.zero_grad()
        twin.eval()(lucid.Tensor(x)).sum().backward()
        assert_same(late, pgrads(twin))
        model.zero_grad()
        twin.zero_grad()
        xg = lucid.Tensor(x, requires_grad=True)
        yg = cm(xg)  # eval + an input requiring grad: a grad call, as in eager
        assert yg.requires_grad and len(prepared) == before + 6
        yg.sum().backward()
        xe = lucid.Tensor(x, requires_grad=True)
        twin.eval()(xe).sum().backward()
        np.testing.assert_allclose(xg.grad, xe.grad, **F32)
        assert_same(pgrads(model), pgrads(twin))
    finally:
        cm.train()
        twin.train()
    for _ in range(2):  # switching grad modes back and forth builds nothing new
        with lucid.no_grad():
            assert not cm(lucid.Tensor(x)).requires_grad
        assert cm(lucid.Tensor(x)).requires_grad
    pgrads(model)
    assert len(prepared) == before + 6


def test_optimizer_steps_between_calls_without_recompiling(seed):
    model, cm, prepared, twin = seed
    opts = [lucid.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (model, twin)]
    losses = []
    before = -1
    for step in range(5):
        if step == 1:  # the first step builds the grad entry unless an earlier test did
            before = len(prepared)
        x = x_of(8, 10 + step)
        pair = []
        for m, opt, run in ((model, opts[0], cm), (twin, opts[1], twin)):
            opt.zero_grad()
            loss = (run(lucid.Tensor(x)) ** 2).mean()
            loss.backward()
            opt.step()
            pair.append(float(loss.data))
        losses.append(pair)
    np.testing.assert_allclose(*np.array(losses).T, rtol=1e-5)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.data, dict(twin.named_parameters())[name].data, **F32)
    assert len(prepared) == before  # params are read live: no rebuild after a step


def test_backward_reads_params_updated_in_place_like_eager(seed):
    """A step between forward and backward: both read the updated weights (shared arrays)."""
    model, cm, _, twin = seed
    x = x_of(3, 20)
    y, ye = cm(lucid.Tensor(x)), twin(lucid.Tensor(x))
    for m in (model, twin):
        m.fc2.weight.data *= 0.5
    y.sum().backward()
    ye.sum().backward()
    assert_same(pgrads(model), pgrads(twin))


def test_frozen_params_get_no_grad(seed):
    model, cm, _, _ = seed
    x = x_of(2, 21)
    model.fc1.weight.requires_grad = False
    try:
        cm(lucid.Tensor(x)).sum().backward()
        got = pgrads(model)
        assert got["fc1.weight"] is None and got["fc1.bias"] is not None
        for p in model.parameters():
            p.requires_grad = False
        y = cm(lucid.Tensor(x))  # nothing requires grad: the forward-only build
        assert not y.requires_grad
    finally:
        for p in model.parameters():
            p.requires_grad = True


def test_grad_fast_path_serves_repeat_calls(seed, monkeypatch):
    model, cm, _, _ = seed
    x = lucid.Tensor(x_of(5, 22))
    cm(x).sum().backward()  # may take the slow path once (mode switch)
    calls = []
    real = cm._call_slow
    monkeypatch.setattr(cm, "_call_slow", lambda args: calls.append(1) or real(args))
    y = cm(x)
    y.sum().backward()
    assert calls == [] and y.requires_grad
    pgrads(model)


def test_backward_stages_and_source(seed, golden):
    model, cm, _, _ = seed
    cm(x_of(2)).sum().backward()  # the grad signature of plain inputs in train mode
    pgrads(model)
    sig = next(s for s in cm.signatures if s.grad == (False,))
    stages = cm.stages(sig, which="backward")
    assert next(iter(stages)) == "autodiff" and "fuse_epilogue" in stages
    from lucid.ir import format_graph

    golden("grad_seed_opt.lir", format_graph(stages["optimized"]))
    src = cm.backward_source
    assert src is not None and "hardswish_grad" in src
    with pytest.raises(ValueError, match="which"):
        cm.stages(sig, which="sideways")


# ---------------------------------------------------------------- several outputs


class TwoHeads(nn.Module):
    """Two outputs of one shared hidden layer, so both cotangents reach the same weights."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        h = nn.functional.hardswish(self.fc(x))
        return self.head(h), h.sum(1)


@pytest.mark.slow
def test_multiple_outputs_run_the_backward_once():
    lucid.random.seed(4)
    model, twin = TwoHeads(), TwoHeads()
    twin.load_state_dict(model.state_dict())
    cm = lucid.compile(model)
    x = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    runs = []
    a, b = cm(lucid.Tensor(x))
    grad_program = cm.entry().grad
    real = grad_program.run
    grad_program.run = lambda *args: runs.append(1) or real(*args)
    ae, be = twin(lucid.Tensor(x))
    ((a * a).sum() + b.sum() * 3.0).backward()  # both outputs, one backward pass
    ((ae * ae).sum() + be.sum() * 3.0).backward()
    assert runs == [1]
    assert_same(pgrads(model), pgrads(twin))
    a, b = cm(lucid.Tensor(x))  # only one output used: the other's cotangent is zero
    ae, be = twin(lucid.Tensor(x))
    b.backward()
    be.backward()
    got = pgrads(model)
    assert got["head.weight"] is None and got["head.bias"] is None  # as eager: None, not zeros
    assert_same(got, pgrads(twin))
    a, b = cm(lucid.Tensor(x))  # each output's own backward: the sum of both, as eager
    ae, be = twin(lucid.Tensor(x))
    for t in (a, b, ae, be):
        t.backward()
    assert_same(pgrads(model), pgrads(twin))
    assert runs == [1, 1, 1, 1]
