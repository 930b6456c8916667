"""The composed losses without PyTorch: bad inputs give errors naming the loss and the shapes."""

from __future__ import annotations

import numpy as np
import pytest

import lucid.nn.functional as F
from lucid import Tensor

X = Tensor(np.zeros((4, 3)))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: F.nll_loss(X, np.zeros((4, 1), np.int64)), ValueError,
         r"nll_loss: input of shape \(4, 3\) needs target of shape \(4,\), got \(4, 1\)"),
        (lambda: F.nll_loss(X, np.zeros(4)), TypeError,
         "nll_loss: target must hold integer class indices, got dtype float64"),
        (lambda: F.nll_loss(X, np.array([0, 1, 3, 0])), IndexError,
         r"nll_loss: target classes must lie in \[0, 3\), got 3"),
        (lambda: F.nll_loss(Tensor(np.zeros(3)), np.array(0)), ValueError,
         r"nll_loss: expected input of shape \[N, C\], got \(3,\)"),
        (lambda: F.nll_loss(X, np.zeros(4, np.int64), weight=Tensor(np.ones(4))), ValueError,
         r"nll_loss: weight must have shape \(3,\) for input of shape \(4, 3\), got \(4,\)"),
        (lambda: F.l1_loss(X, np.zeros((4, 1))), ValueError,
         r"l1_loss: input has shape \(4, 3\) but target has shape \(4, 1\)"),
        (lambda: F.huber_loss(X, np.zeros(3)), ValueError,
         r"huber_loss: input has shape \(4, 3\) but target has shape \(3,\)"),
        (lambda: F.huber_loss(X, np.zeros((4, 3)), delta=0), ValueError,
         "huber_loss: delta must be positive"),
        (lambda: F.binary_cross_entropy_with_logits(X, np.zeros((3, 4))), ValueError,
         r"binary_cross_entropy_with_logits: input has shape \(4, 3\) but target has shape \(3, 4\)"),
        (lambda: F.binary_cross_entropy_with_logits(X, Tensor(np.zeros((4, 3), np.float32))),
         TypeError, "binary_cross_entropy_with_logits: operands have different dtypes"),
        (lambda: F.l1_loss(Tensor(np.zeros(3, np.int64)), np.zeros(3)), TypeError,
         "l1_loss: input must be a floating-point Tensor, got dtype int64"),
        (lambda: F.l1_loss(X, np.zeros((4, 3)), reduction="avg"), ValueError,
         "l1_loss: reduction must be one of 'mean', 'sum', 'none', got 'avg'"),
        (lambda: F.cross_entropy(X, np.zeros(4, np.int64), label_smoothing=1.5), ValueError,
         r"cross_entropy: label_smoothing must lie in \[0, 1\], got 1.5"),
        (lambda: F.cross_entropy(X, np.zeros(4, np.int64), reduction="each"), ValueError,
         "cross_entropy: reduction must be 'mean', 'sum' or 'none', got 'each'"),
    ],
)  # fmt: skip
def test_bad_inputs_name_the_loss_and_the_shapes(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()


def test_huber_is_quadratic_inside_delta_and_linear_outside() -> None:
    d = Tensor(np.array([-3.0, -1.0, 0.5, 2.0]), requires_grad=True)
    loss = F.huber_loss(d, np.zeros(4), reduction="none", delta=1.5)
    np.testing.assert_allclose(loss.data, [1.5 * (3 - 0.75), 0.5, 0.125, 1.5 * (2 - 0.75)])
    loss.sum().backward()
    np.testing.assert_allclose(d.grad, [-1.5, -1.0, 0.5, 1.5])


def test_nll_loss_mean_skips_ignored_rows() -> None:
    logp = Tensor(np.log(np.full((3, 2), 0.5)) * np.array([[1.0], [2.0], [3.0]]))
    loss = F.nll_loss(logp, np.array([0, -100, 1]))
    np.testing.assert_allclose(loss.data, np.log(2) * (1 + 3) / 2)
