"""Training through lucid.compile: compiled gradients against eager and central differences.

C builds cost 1-3 s each (a grad signature builds two), so compiled modules are shared by
module-scoped fixtures and each test asserts several things on one build.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lucid
from lucid import nn
from lucid.nn import functional as F
from tests.models import SeedModel
from tests.runtime.test_compile_models import mlp

TOL = {"atol": 1e-5, "rtol": 1e-3}  # central differences against analytic gradients
KINKS = {
    nn.HardSwish: (-3.0, 3.0),
    nn.HardSigmoid: (-3.0, 3.0),
    nn.ReLU: (0.0,),
    nn.ReLU6: (0.0, 6.0),
    nn.Sigmoid: (),
    nn.Tanh: (),
}


def grads(model: nn.Module, *inputs: lucid.Tensor) -> dict[str, np.ndarray]:
    """Every parameter's and input's .grad, then cleared."""
    out = {name: p.grad for name, p in model.named_parameters()}
    out.update({f"input{i}": t.grad for i, t in enumerate(inputs) if t.requires_grad})
    for p in model.parameters():
        p.grad = None
    for t in inputs:
        t.grad = None
    return out


def weighted_loss(y: lucid.Tensor, c: np.ndarray) -> lucid.Tensor:
    """sum(y * c): an eager loss on the output whose cotangent is not uniform."""
    return (y * lucid.Tensor(c)).sum()


def central_differences(
    model: nn.Module, x: np.ndarray, c: np.ndarray, eps: float = 1e-6
) -> dict[str, np.ndarray]:
    """float64 central differences of sum(model(x) * c) for every param and for x."""

    def f() -> float:
        with lucid.no_grad():
            return float((model(lucid.Tensor(x)).data * c).sum())

    targets = {name: p.data for name, p in model.named_parameters()}
    targets["input0"] = x
    out = {}
    for name, a in targets.items():
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            keep = a[i]
            a[i] = keep + eps
            hi = f()
            a[i] = keep - eps
            lo = f()
            a[i] = keep
            g[i] = (hi - lo) / (2 * eps)
        out[name] = g
    return out


def margin_to_kinks(model: nn.Sequential | SeedModel, x: np.ndarray) -> float:
    """The smallest distance of a pre-activation to a kink of the activation applied to it."""
    layers = (
        [model.fc1, model.hardswish, model.fc2] if isinstance(model, SeedModel) else list(model)
    )
    h, best = x, np.inf
    with lucid.no_grad():
        for layer in layers:
            for k in KINKS.get(type(layer), ()):
                best = min(best, float(np.abs(h - k).min()))
            h = layer(lucid.Tensor(h)).data
    return best


def check_against_eager_and_fd(cm, model: nn.Module, x: np.ndarray, c: np.ndarray) -> None:
    """Compiled grads == eager grads == central differences (float64 model, x requires grad)."""
    xt = lucid.Tensor(x, requires_grad=True)
    y = cm(xt)
    assert y.requires_grad
    weighted_loss(y, c).backward()
    got = grads(model, xt)
    xe = lucid.Tensor(x, requires_grad=True)
    weighted_loss(model(xe), c).backward()
    want = grads(model, xe)
    fd = central_differences(model, x.copy(), c)
    assert sorted(got) == sorted(want) == sorted(fd)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(got[name], fd[name], **TOL, err_msg=name)


# ---------------------------------------------------------------- the seed model


@pytest.fixture(scope="module")
def seed64():
    """A float64 seed model compiled with a dynamic batch (C backend)."""
    lucid.random.seed(3)
    model = SeedModel(np.float64)
    return model, lucid.compile(model, dynamic_batch=True)


@pytest.mark.needs_cc
def test_seed_float64_matches_eager_and_central_differences(seed64):
    model, cm = seed64
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        x = rng.standard_normal((batch, 3)) * 3
        if margin_to_kinks(model, x) < 1e-3:
            x += 0.01  # keep the sample away from HardSwish's kinks (checked again below)
        assert margin_to_kinks(model, x) > 1e-4
        check_against_eager_and_fd(cm, model, x, rng.standard_normal((batch, 2)))
    assert len(cm.signatures) == 1 and cm.signatures[0].grad == (True,)


@pytest.mark.needs_cc
def test_seed_kinks_follow_the_seed_rule(seed64):
    """Pre-activations exactly at -3, 3 and the flat/linear pieces: compiled == eager."""
    model, cm = seed64
    state = {k: v.copy() for k, v in model.state_dict().items()}
    try:
        model.fc1.weight.data[...] = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]]
        model.fc1.bias.data[...] = [0, 0, 0, 1e-9, -4]
        x = np.array([[3.0, -3.0, 0.0], [-3.0, 3.0, 7.0]])
        c = np.array([[1.0, -2.0], [0.5, 3.0]])
        check_eager = lucid.Tensor(x, requires_grad=True)
        weighted_loss(model(check_eager), c).backward()
        want = grads(model, check_eager)
        xt = lucid.Tensor(x, requires_grad=True)
        weighted_loss(cm(xt), c).backward()
        got = grads(model, xt)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=0, err_msg=name)
        # HardSwish' is x/3 + 1/2 on [-3, 3] inclusive: -0.5 at -3 and 1.5 at 3 (the seed rule)
        dh = c @ model.fc2.weight.data
        # z = [[3, -3, 0, 3 + 1e-9, -7], [-3, 3, 7, -3 + 1e-9, -1]]
        slope = np.array([[1.5, -0.5, 0.5, 1.0, 0.0], [-0.5, 1.5, 1.0, -0.5 + 1e-9 / 3, 1 / 6]])
        np.testing.assert_allclose(want["fc1.bias"], (dh * slope).sum(0), rtol=1e-12)
    finally:
        model.load_state_dict(state)
    assert len(cm.signatures) == 1  # in-place weight edits need no new build


# ---------------------------------------------------------------- random MLPs

ACTS = [nn.HardSwish, nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh, nn.HardSigmoid]


def _mlp_case(draw_widths, act, seed: int):
    lucid.random.seed(seed)
    model = mlp(draw_widths, act, np.float64)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, draw_widths[0])) * 2
    c = rng.standard_normal((3, draw_widths[-1]))
    return model, x, c


def _check_mlp(widths: list[int], act: type, seed: int, backend: str) -> None:
    model, x, c = _mlp_case(widths, act, seed)
    for _ in range(20):  # step off any kink (hypothesis may not shrink onto one either)
        if margin_to_kinks(model, x) > 1e-4:
            break
        x = x + 0.013
    assert margin_to_kinks(model, x) > 1e-4
    cm = lucid.compile(model, backend=backend, dynamic_batch=True)
    check_against_eager_and_fd(cm, model, x, c)


MLP_CASE = {
    "widths": st.lists(st.integers(1, 6), min_size=2, max_size=4),
    "act": st.sampled_from(ACTS),
    "seed": st.integers(0, 2**16),
}


@settings(max_examples=3, derandomize=True, deadline=None)
@given(**MLP_CASE)
@pytest.mark.needs_cc
@pytest.mark.slow
def test_random_mlps_compiled_c(widths, act, seed):
    _check_mlp(widths, act, seed, "c")


@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(**MLP_CASE)
def test_random_mlps_interpreter(widths, act, seed):
    _check_mlp(widths, act, seed, "interpreter")


# ---------------------------------------------------------------- losses inside the model


class WithLoss(nn.Module):
    """An MLP whose forward returns its loss: cross_entropy (i64 target) or mse_loss."""

    def __init__(self, loss: str, dtype: object = np.float32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16, dtype=dtype)
        self.act = nn.HardSwish()
        self.fc2 = nn.Linear(16, 4, dtype=dtype)
        self.loss = loss

    def forward(self, x, target):
        logits = self.fc2(self.act(self.fc1(x)))
        if self.loss == "ce":
            return F.cross_entropy(logits, target)
        return F.mse_loss(logits, target)


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.needs_cc
@pytest.mark.slow
def test_loss_inside_the_model(loss):
    lucid.random.seed(5)
    model = WithLoss(loss, np.float64)
    cm = lucid.compile(model, dynamic_batch=True)
    rng = np.random.default_rng(1)
    for batch in (8, 3):
        x = rng.standard_normal((batch, 6))
        t = rng.integers(0, 4, batch) if loss == "ce" else rng.standard_normal((batch, 4))
        out = cm(lucid.Tensor(x), lucid.Tensor(t))
        assert out.shape == () and out.requires_grad
        out.backward()
        got = grads(model)
        ref = model(lucid.Tensor(x), lucid.Tensor(t))
        ref.backward()
        want = grads(model)
        np.testing.assert_allclose(out.data, ref.data, rtol=1e-12)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-12)
    assert [s.grad for s in cm.signatures] == [(False, False)]  # the target needs no grad
