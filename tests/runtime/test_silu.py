"""SiLU, the op added as a proof of the one-definition op layer: eager, IR, VJP, C and fusion."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.nn import functional as F


def test_silu_values_and_gradient_match_the_textbook_formula() -> None:
    x64 = np.array([-40.0, -3.0, -0.5, 0.0, 0.7, 2.5, 30.0])
    x = lucid.Tensor(x64, requires_grad=True)
    y = F.silu(x)
    s = 1 / (1 + np.exp(-x64))
    np.testing.assert_allclose(y.data, x64 * s, rtol=1e-15, atol=1e-300)
    y.backward()
    np.testing.assert_allclose(x.grad, s * (1 + x64 * (1 - s)), rtol=1e-14, atol=1e-300)
    assert F.silu(lucid.Tensor([1.0, -1.0])).dtype == np.float32
    with pytest.raises(TypeError, match="silu: expected a floating-point Tensor"):
        F.silu(lucid.Tensor(np.array([1, 2])))


class LinearActLinear(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features=6, out_features=16)
        self.act = act
        self.fc2 = nn.Linear(in_features=16, out_features=3)

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.needs_cc
@pytest.mark.parametrize("batch", [1, 5, 64])
def test_linear_silu_linear_fuses_and_matches_eager(batch: int) -> None:
    lucid.random.seed(3)
    model = LinearActLinear(nn.SiLU())
    x = np.random.default_rng(batch).standard_normal((batch, 6)).astype(np.float32) * 3
    compiled = lucid.compile(model)
    with lucid.no_grad():  # inference: the forward-only graph, where fusion applies
        want = model(lucid.Tensor(x))
        got = compiled(lucid.Tensor(x))
        np.testing.assert_allclose(got.data, want.data, rtol=1e-5, atol=1e-6)
        optimized = str(compiled.graph())
        seed = lucid.compile(LinearActLinear(nn.HardSwish()))
        seed(lucid.Tensor(x))
        # fused exactly like HardSwish: the same optimized graph, op for op
        assert optimized == str(seed.graph()).replace("hardswish", "silu")
    assert "fused_" in optimized and "silu" in optimized
    top_level = [line for line in optimized.splitlines() if line.startswith("  %")]
    assert not any(" = silu " in line for line in top_level), optimized

    # backward through the compiled module equals eager backward
    for p in model.parameters():
        p.grad = None
    xe = lucid.Tensor(x, requires_grad=True)
    (model(xe) * 0.5).sum().backward()
    eager = [p.grad.copy() for p in model.parameters()] + [xe.grad.copy()]
    for p in model.parameters():
        p.grad = None
    xc = lucid.Tensor(x, requires_grad=True)
    (compiled(xc) * 0.5).sum().backward()
    for g, want_g in zip([p.grad for p in model.parameters()] + [xc.grad], eager):
        np.testing.assert_allclose(g, want_g, rtol=1e-4, atol=1e-5)
