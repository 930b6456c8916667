"""Values and gradients of every loss against PyTorch, all reductions (optional: needs torch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import lucid.nn.functional as F
from lucid import Tensor, nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOL = {np.float64: {"rtol": 1e-10, "atol": 1e-12}, np.float32: {"rtol": 1e-5, "atol": 1e-6}}
REDUCTIONS = ("mean", "sum", "none")
N, C = 6, 4


def _data(dtype: Any) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((N, C)) * 3
    return {
        "x": logits.astype(dtype),
        "y": rng.standard_normal((N, C)).astype(dtype),
        "prob": rng.uniform(0, 1, (N, C)).astype(dtype),
        "logp": (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(dtype),
        "cls": rng.integers(0, C, N).astype(np.int64),
        "pos": rng.uniform(0.5, 3, C).astype(dtype),
        "w": rng.uniform(0.5, 2, C).astype(dtype),
    }


# name -> (lucid call, torch call, input key, target key, reductions); calls take
# (input, target, reduction, data)
Case = tuple[Callable[..., Any], Callable[..., Any], str, str, tuple[str, ...]]


def plain(ours: Callable[..., Any], theirs: Callable[..., Any]) -> tuple[Any, Any]:
    """The two calls of a loss without extra arguments."""
    return (
        lambda a, b, reduction, d: ours(a, b, reduction=reduction),
        lambda a, b, reduction, d: theirs(a, b, reduction=reduction),
    )


CASES: dict[str, Case] = {
    "l1": (*plain(F.l1_loss, TF.l1_loss), "x", "y", REDUCTIONS),
    "huber": (*plain(F.huber_loss, TF.huber_loss), "x", "y", REDUCTIONS),
    "huber_delta": (
        lambda a, b, reduction, d: F.huber_loss(a, b, reduction, delta=2.5),
        lambda a, b, reduction, d: TF.huber_loss(a, b, reduction=reduction, delta=2.5),
        "x",
        "y",
        REDUCTIONS,
    ),
    "mse": (*plain(F.mse_loss, TF.mse_loss), "x", "y", REDUCTIONS),
    "bce_logits": (
        *plain(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits),
        "x",
        "prob",
        REDUCTIONS,
    ),
    "bce_logits_pos_weight": (
        lambda a, b, reduction, d: F.binary_cross_entropy_with_logits(
            a, b, reduction=reduction, pos_weight=Tensor(d["pos"])
        ),
        lambda a, b, reduction, d: TF.binary_cross_entropy_with_logits(
            a, b, reduction=reduction, pos_weight=torch.from_numpy(d["pos"])
        ),
        "x",
        "prob",
        REDUCTIONS,
    ),
    "nll": (*plain(F.nll_loss, TF.nll_loss), "logp", "cls", REDUCTIONS),
    "nll_weight": (
        lambda a, b, reduction, d: F.nll_loss(a, b, weight=Tensor(d["w"]), reduction=reduction),
        lambda a, b, reduction, d: TF.nll_loss(
            a, b, weight=torch.from_numpy(d["w"]), reduction=reduction
        ),
        "logp",
        "cls",
        REDUCTIONS,
    ),
    "nll_ignore": (
        lambda a, b, reduction, d: F.nll_loss(a, b, ignore_index=1, reduction=reduction),
        lambda a, b, reduction, d: TF.nll_loss(a, b, ignore_index=1, reduction=reduction),
        "logp",
        "cls",
        REDUCTIONS,
    ),
    "cross_entropy": (*plain(F.cross_entropy, TF.cross_entropy), "x", "cls", REDUCTIONS),
    "cross_entropy_smoothing": (
        lambda a, b, reduction, d: F.cross_entropy(a, b, reduction, label_smoothing=0.2),
        lambda a, b, reduction, d: TF.cross_entropy(a, b, reduction=reduction, label_smoothing=0.2),
        "x",
        "cls",
        REDUCTIONS,
    ),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_values_and_gradients_match_torch(name: str, dtype: Any) -> None:
    ours_fn, theirs_fn, xk, tk, reductions = CASES[name]
    d = _data(dtype)
    for reduction in reductions:
        x = Tensor(d[xk], requires_grad=True)
        loss = ours_fn(x, Tensor(d[tk]), reduction, d)
        tx = torch.from_numpy(d[xk]).requires_grad_()
        ref = theirs_fn(tx, torch.from_numpy(d[tk]), reduction, d)
        assert loss.dtype == dtype and loss.shape == tuple(ref.shape), reduction
        np.testing.assert_allclose(loss.data, ref.detach().numpy(), **TOL[dtype], err_msg=reduction)
        seed = np.random.default_rng(1).standard_normal(loss.shape).astype(dtype)
        loss.backward(seed)
        ref.backward(torch.from_numpy(seed))
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), **TOL[dtype], err_msg=reduction)


def test_bce_with_logits_is_stable_for_large_logits() -> None:
    x = Tensor(np.array([-800.0, -30.0, 0.0, 30.0, 800.0]), requires_grad=True)
    y = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    tx = torch.from_numpy(x.data.copy()).requires_grad_()
    ref = TF.binary_cross_entropy_with_logits(tx, torch.from_numpy(y), reduction="none")
    assert np.isfinite(loss.data).all()
    np.testing.assert_allclose(loss.data, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    loss.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_loss_modules_follow_their_functional_forms() -> None:
    d = _data(np.float64)
    x, y, logp, cls = (Tensor(d[k]) for k in ("x", "y", "logp", "cls"))
    pairs = [
        (nn.L1Loss(reduction="sum")(x, y), F.l1_loss(x, y, "sum")),
        (nn.HuberLoss(delta=0.5)(x, y), F.huber_loss(x, y, delta=0.5)),
        (nn.NLLLoss()(logp, cls), F.nll_loss(logp, cls)),
        (
            nn.BCEWithLogitsLoss()(x, Tensor(d["prob"])),
            F.binary_cross_entropy_with_logits(x, d["prob"]),
        ),
        (
            nn.CrossEntropyLoss(label_smoothing=0.1)(x, cls),
            F.cross_entropy(x, cls, label_smoothing=0.1),
        ),
    ]
    for got, want in pairs:
        np.testing.assert_array_equal(got.data, want.data)
    assert repr(nn.HuberLoss(delta=0.5)) == "HuberLoss(reduction='mean', delta=0.5)"
    assert "label_smoothing=0.1" in repr(nn.CrossEntropyLoss(label_smoothing=0.1))
