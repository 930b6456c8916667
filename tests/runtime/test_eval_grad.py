"""Differentiating through a compiled model in eval() mode, as eager lucid allows (issue 14).

Before, an eval-mode call with parameters requiring grad returned outputs that did not
require grad, so `backward()` failed where eager gives the parameters their gradients.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.errors import RecompileWarning
from tests.models import seed_model

pytestmark = pytest.mark.needs_cc


class TwoHeads(nn.Module):
    """Two outputs: one reaches the parameters, one is the input alone."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Any) -> Any:
        return self.fc(x).tanh(), x * 3


def _grads(model: nn.Module) -> list[Any]:
    out = [None if p.grad is None else p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    return out


@pytest.mark.parametrize("dynamic", [False, True])
def test_eval_mode_backward_matches_eager_in_float64(dynamic: bool) -> None:
    lucid.random.seed(5)
    model = seed_model()
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    model.eval()
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecompileWarning)
        for n in (1, 4, 3):
            x = np.random.default_rng(n).standard_normal((n, 3))
            for run in (compiled, compiled):  # the second call takes the fast path
                y = run(x)
                assert y.requires_grad and y.is_leaf is False
                (y * y).sum().backward()
                got = _grads(model)
                (model(lucid.tensor(x)) ** 2).sum().backward()
                want = _grads(model)
                for g, w in zip(got, want):
                    np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def test_eval_mode_outputs_follow_eager_requires_grad() -> None:
    model = TwoHeads().eval()
    compiled = lucid.compile(model)
    x = np.ones((2, 3), np.float32)
    head, plain = compiled(x)
    eager_head, eager_plain = model(lucid.tensor(x))
    assert (head.requires_grad, plain.requires_grad) == (True, False)
    assert (eager_head.requires_grad, eager_plain.requires_grad) == (True, False)
    with pytest.warns(RecompileWarning, match="backward through an eval-mode call"):
        head.sum().backward()
    got = _grads(model)
    eager_head.sum().backward()
    for g, w in zip(got, _grads(model)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    with lucid.no_grad():  # inference: nothing requires grad
        assert not compiled(x)[0].requires_grad
    for p in model.parameters():  # a frozen model: nothing requires grad either
        p.requires_grad = False
    assert not compiled(x)[0].requires_grad
