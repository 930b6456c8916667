"""Python numbers passed to a compiled forward behave as in eager (issue 14): they take the
dtype of the model's float inputs, and they are run-time values, never baked-in constants."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
from lucid import nn


class Scaled(nn.Module):
    def __init__(self, dtype: type) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        if dtype is np.float64:
            self.fc.weight.data = self.fc.weight.data.astype(np.float64)
            self.fc.bias.data = self.fc.bias.data.astype(np.float64)

    def forward(self, x: lucid.Tensor, k: float) -> lucid.Tensor:
        return self.fc(x) * k + k


@pytest.mark.needs_cc
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numbers_match_eager_and_are_not_baked_in(dtype: type) -> None:
    lucid.random.seed(1)
    model = Scaled(dtype)
    compiled = lucid.compile(model)
    rng = np.random.default_rng(0)
    for batch, k in [(4, 2.0), (4, -0.5), (7, 3), (1, 0.25)]:
        x = lucid.Tensor(rng.standard_normal((batch, 3)).astype(dtype))
        with lucid.no_grad():
            want = model(x, k)
            got = compiled(x, k)
        assert got.dtype == want.dtype == dtype
        np.testing.assert_allclose(got.data, want.data, rtol=1e-6, atol=1e-6)


@pytest.mark.needs_cc
def test_a_number_argument_with_gradients() -> None:
    lucid.random.seed(2)
    model = Scaled(np.float32)
    compiled = lucid.compile(model)
    x = np.random.default_rng(3).standard_normal((5, 3)).astype(np.float32)
    grads = []
    for run in (model, compiled):
        for p in model.parameters():
            p.grad = None
        xt = lucid.Tensor(x, requires_grad=True)
        run(xt, 1.5).sum().backward()
        grads.append([xt.grad.copy(), *(p.grad.copy() for p in model.parameters())])
    for got, want in zip(grads[1], grads[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
