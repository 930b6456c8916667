"""The eager step's fast paths equal the general paths they shortcut, bit for bit.

- `Tensor.backward()` of a 0-d tensor seeds with a shared read-only ones array per dtype;
  it must give the same gradients as an explicit ones seed, for float32 and float64, with
  `keep_grad`, and must never hand the shared seed out as a `.grad`.
- `mse_loss`'s backward takes a 0-d cotangent as a scalar and skips the target's cotangent
  when the target does not require grad.
- Plain `SGD.step` runs inline; it must match `_update` through the base loop and bump
  `_version`.
"""

from __future__ import annotations

import numpy as np
import pytest

import lucid
from lucid import Tensor, nn, optim
from lucid.nn import functional as F
from lucid.optim.optimizer import Optimizer


def _data(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.standard_normal((4, 3)).astype(dtype), rng.standard_normal((4, 3)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("target_grad", [False, True])
def test_scalar_loss_seed_and_mse_backward_equal_the_general_path(
    dtype: str, reduction: str, target_grad: bool
) -> None:
    p0, t0 = _data(dtype)
    grads = []
    for seed in (None, np.ones((), dtype)):
        pred = Tensor(p0, requires_grad=True)
        target = Tensor(t0, requires_grad=target_grad)
        mid = pred * 1.5
        mid.keep_grad = True
        loss = F.mse_loss(mid, target, reduction=reduction)
        loss.keep_grad = True
        loss.backward(seed)
        assert loss.grad is not None and loss.grad.flags.writeable and loss.grad.dtype == dtype
        grads.append((pred.grad, mid.grad, loss.grad, target.grad))
    for fast, general in zip(*grads):
        if general is None:
            assert fast is None
            continue
        assert fast.dtype == general.dtype and fast.shape == general.shape
        np.testing.assert_array_equal(fast, general)
    # the old rule, written out: gp = (p - t) * (g * 2 / n), target gets -gp
    g = np.ones((), dtype)
    d = p0 * p0.dtype.type(1.5) - t0
    scale = g * 2 / d.size if reduction == "mean" else g * 2
    np.testing.assert_array_equal(grads[0][1], d * scale)
    if target_grad:
        np.testing.assert_array_equal(grads[0][3], -(d * scale))


def test_scalar_seed_is_shared_read_only_and_never_a_grad() -> None:
    leaf = Tensor(np.float32(2.0), requires_grad=True)
    from lucid._tape import scalar_one as _scalar_one

    leaf.backward()
    assert leaf.grad is not None and leaf.grad.flags.writeable  # a copy of the seed
    leaf.backward()  # accumulates into a fresh value, never into the seed
    np.testing.assert_array_equal(leaf.grad, np.float32(2.0))
    assert leaf.grad is not _scalar_one(np.dtype("float32"))

    assert _scalar_one(np.dtype("float32")) is _scalar_one(np.dtype("float32"))
    assert not _scalar_one(np.dtype("float64")).flags.writeable
    assert _scalar_one(np.dtype("float64")).dtype == np.float64
    assert float(_scalar_one(np.dtype("float32"))) == 1.0


def test_a_general_graph_with_a_scalar_root_matches_an_explicit_seed() -> None:
    a0, b0 = _data("float64")
    out = []
    for seed in (None, np.ones((), "float64")):
        a, b = Tensor(a0, requires_grad=True), Tensor(b0, requires_grad=True)
        loss = (a * b + a).sum() * 0.5 + F.mse_loss(a, b)
        loss.backward(seed)
        out.append((a.grad, b.grad))
    for fast, general in zip(*out):
        np.testing.assert_array_equal(fast, general)


class _BaseLoopSGD(optim.SGD):
    """SGD through the base class's per-parameter `_update` loop (the general path)."""

    def step(self) -> None:
        Optimizer.step(self)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inline_plain_sgd_equals_the_update_loop(dtype: str) -> None:
    results = []
    for cls in (optim.SGD, _BaseLoopSGD):
        lucid.random.seed(0)
        model = nn.Linear(3, 2, dtype=dtype)
        x, t = _data(dtype)
        opt = cls(model.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            F.mse_loss(model(Tensor(x)), Tensor(t[:, :2])).backward()
            data_ids = [id(p.data) for p in model.parameters()]
            opt.step()
            assert [id(p.data) for p in model.parameters()] == data_ids  # in place
        assert [p._version for p in model.parameters()] == [3, 3]
        results.append([p.data.copy() for p in model.parameters()])
    for fast, general in zip(*results):
        np.testing.assert_array_equal(fast, general)


def test_inline_sgd_skips_missing_grads_and_plain_tensors() -> None:
    w = nn.Parameter(np.ones(2, np.float32))
    plain = Tensor(np.ones(2, np.float32), requires_grad=True)
    opt = optim.SGD([w, plain], lr=0.5)
    plain.grad = np.full(2, 2.0, np.float32)
    opt.step()
    assert w._version == 0 and not hasattr(plain, "_version")
    np.testing.assert_array_equal(plain.data, np.zeros(2, np.float32))
    np.testing.assert_array_equal(w.data, np.ones(2, np.float32))
