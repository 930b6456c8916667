"""SGD and Adam update rules, in-place updates, versions, and end-to-end training of a small MLP."""

from __future__ import annotations

import time

import numpy as np
import pytest

import lucid
from lucid import Tensor, nn, optim


def param(values) -> nn.Parameter:
    return nn.Parameter(np.array(values, dtype=np.float64))


def test_sgd_plain_momentum_and_weight_decay_follow_pytorch() -> None:
    p = param([1.0, -2.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5)
    data = p.data
    v = np.zeros(2)
    expected = p.data.copy()
    for step in range(3):
        g = np.array([0.5, 1.0]) * (step + 1)
        p.grad = g.copy()
        d = g + 0.5 * expected
        v = d if step == 0 else 0.9 * v + d
        expected = expected - 0.1 * v
        opt.step()
        np.testing.assert_allclose(p.data, expected, rtol=1e-12)
    assert p.data is data and p._version == 3


def test_adam_matches_the_reference_formula() -> None:
    p = param([0.5, -1.5, 2.0])
    opt = optim.Adam([p], lr=0.01, betas=(0.8, 0.9), eps=1e-6)
    m = v = np.zeros(3)
    expected = p.data.copy()
    for t in range(1, 4):
        g = np.array([0.1, -0.2, 0.3]) * t
        p.grad = g
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        expected = expected - 0.01 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.9**t)) + 1e-6)
        opt.step()
        np.testing.assert_allclose(p.data, expected, rtol=1e-12)
    assert p._version == 3


def test_parameters_without_grad_are_skipped_and_zero_grad_clears() -> None:
    a, b = param([1.0]), param([2.0])
    opt = optim.SGD([a, b], lr=1.0)
    a.grad = np.array([1.0])
    opt.step()
    assert (a.data[0], b.data[0], a._version, b._version) == (0.0, 2.0, 1, 0)
    opt.zero_grad()
    assert a.grad is None


def test_optimizer_argument_errors() -> None:
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="parameter 0 must be a Tensor with requires_grad=True"):
        optim.SGD([Tensor([1.0])], lr=0.1)
    with pytest.raises(ValueError, match="learning rate must be >= 0, got -1"):
        optim.Adam([param([1.0])], lr=-1)
    with pytest.raises(ValueError, match=r"betas must lie in \[0, 1\)"):
        optim.Adam([param([1.0])], betas=(0.9, 1.0))


def blobs(n_classes: int, n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2 * n_classes Gaussian blobs on a circle, labels alternating round it.

    Opposite neighbours share no label, so no linear model separates the classes (for two
    classes this is XOR): reaching the accuracy bar needs the hidden HardSwish layer.
    """
    rng = np.random.default_rng(seed)
    k = 2 * n_classes
    angles = 2 * np.pi * np.arange(k) / k
    centres = 3.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    blob = rng.integers(0, k, n)
    x = centres[blob] + rng.standard_normal((n, 2)) * 0.5
    return x.astype(np.float32), (blob % n_classes).astype(np.int64)


def train(n_classes: int, make_opt, epochs: int = 100, linear_only: bool = False) -> float:
    lucid.random.seed(0)
    x, y = blobs(n_classes)
    act = nn.Identity() if linear_only else nn.HardSwish()
    model = nn.Sequential(nn.Linear(2, 16), act, nn.Linear(16, n_classes))
    opt = make_opt(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = Tensor(x), Tensor(y)
    first = None
    for _ in range(epochs):
        for i in range(0, len(x), 50):
            opt.zero_grad()
            loss = loss_fn(model(xt[i : i + 50]), yt[i : i + 50])
            loss.backward()
            opt.step()
            first = loss.data if first is None else first
    with lucid.no_grad():
        logits = model(xt).data
    final = float(loss_fn(model(xt), yt).data)
    assert final < float(first)
    return float((logits.argmax(axis=1) == y).mean())


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize(
    "make_opt",
    [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: optim.Adam(ps, lr=0.01)],
    ids=["sgd-momentum", "adam"],
)
def test_mlp_learns_blobs(n_classes: int, make_opt) -> None:
    start = time.perf_counter()
    accuracy = train(n_classes, make_opt)
    assert accuracy >= 0.9, accuracy
    assert time.perf_counter() - start < 5.0


def test_a_linear_model_cannot_solve_the_problem() -> None:
    # Guards the test above: its accuracy bar is out of reach without the nonlinearity.
    accuracy = train(2, lambda ps: optim.Adam(ps, lr=0.01), linear_only=True)
    assert accuracy < 0.75
