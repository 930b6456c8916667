"""Values and gradients of every nn module against PyTorch on identical weights (optional)."""

from __future__ import annotations

import numpy as np
import pytest

from lucid import Tensor, nn

torch = pytest.importorskip("torch")

RTOL, ATOL = 1e-10, 1e-12  # float64 throughout: only summation order may differ


def _pair(name: str):
    """(lucid module, torch module) with the same float64 weights."""
    if name == "Linear":
        ours = nn.Linear(5, 3, dtype=np.float64)
        theirs = torch.nn.Linear(5, 3).double()
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(ours.weight.data))
            theirs.bias.copy_(torch.from_numpy(ours.bias.data))
        return ours, theirs
    torch_name = {"HardSwish": "Hardswish", "HardSigmoid": "Hardsigmoid"}.get(name, name)
    return getattr(nn, name)(), getattr(torch.nn, torch_name)()


@pytest.mark.parametrize(
    "name",
    [
        "Linear",
        "HardSwish",
        "HardSigmoid",
        "ReLU",
        "ReLU6",
        "Sigmoid",
        "Tanh",
        "Identity",
        "Flatten",
    ],
)
def test_module_matches_torch(name: str) -> None:
    rng = np.random.default_rng(0)
    # Away from the kinks: torch 2.13's Hardswish/Hardsigmoid backward treats x = +-3 as
    # outside [-3, 3], where lucid follows the seed (inclusive); see test_activations.py.
    x = rng.uniform(-7, 7, 40)
    x[np.abs(np.abs(x) - 3) < 1e-3] += 0.01
    x = x.reshape(8, 5)
    ours, theirs = _pair(name)
    xo = Tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yo, yt = ours(xo), theirs(xt)
    w = rng.standard_normal(yo.shape)
    yo.backward(w)
    yt.backward(torch.from_numpy(w))
    np.testing.assert_allclose(yo.data, yt.detach().numpy(), rtol=RTOL, atol=ATOL)
    # torch computes the hard activations' float64 gradients with float32 constants (1/6).
    rtol = 1e-7 if name in ("HardSwish", "HardSigmoid") else RTOL
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), rtol=rtol, atol=ATOL)
    if name == "Linear":
        np.testing.assert_allclose(
            ours.weight.grad, theirs.weight.grad.numpy(), rtol=RTOL, atol=ATOL
        )
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_losses_match_torch(reduction: str) -> None:
    rng = np.random.default_rng(1)
    z, t = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    p, q = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    for ours, theirs, args_o, args_t in [
        (
            nn.CrossEntropyLoss(reduction),
            torch.nn.CrossEntropyLoss(reduction=reduction),
            (z, t),
            (z, t),
        ),
        (nn.MSELoss(reduction), torch.nn.MSELoss(reduction=reduction), (p, q), (p, q)),
    ]:
        a = Tensor(args_o[0], requires_grad=True)
        b = Tensor(args_o[1])
        at = torch.tensor(args_t[0], requires_grad=True)
        lo, lt = ours(a, b), theirs(at, torch.tensor(args_t[1]))
        lo.backward()
        lt.backward()
        np.testing.assert_allclose(lo.data, lt.item(), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(a.grad, at.grad.numpy(), rtol=RTOL, atol=ATOL)
