"""Convolutions with one output pixel per image whose window is the whole input (a 1x1 conv on
a 1x1 input: squeeze-excitation; a kernel as large as its unpadded input) run as one GEMM over
the batch (lucid/codegen/_lower_conv.py, `_lower_batch_gemm`); every other conv keeps its
per-image GEMMs. Checked against eager lucid with every kind of epilogue operand."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
from lucid import nn

pytestmark = pytest.mark.needs_cc

MARK = "one output pixel per image"


class Squeeze(nn.Module):
    """conv (+bias) -> ReLU -> conv -> HardSigmoid, times a per-image residual: the SE shape."""

    def __init__(self, c: int, hidden: int, kernel: int, groups: int = 1, padding: int = 0):
        super().__init__()
        self.fc1 = nn.Conv2d(c, hidden, kernel, padding=padding, groups=groups)
        self.fc2 = nn.Conv2d(hidden, c, 1)
        self.act = nn.ReLU()
        self.gate = nn.HardSigmoid()

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        s = self.gate(self.fc2(self.act(self.fc1(x))))
        return s * x.mean(axis=(2, 3), keepdims=True) + s


def _check(model: nn.Module, x: np.ndarray, dynamic: bool = False) -> str:
    cm = lucid.compile(model.eval(), dynamic_batch=dynamic)
    with lucid.no_grad():
        got = cm(x).data
        want = model(lucid.Tensor(x)).data
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    return cm.c_source


@pytest.mark.parametrize("batch", [1, 5, 33])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_squeeze_excitation_convs_are_one_gemm_each(batch: int, dtype: type) -> None:
    lucid.random.seed(batch)
    model = Squeeze(72, 24, 1)
    if dtype is np.float64:
        model = model.double()
    x = np.random.default_rng(batch).standard_normal((batch, 72, 1, 1)).astype(dtype)
    assert _check(model, x).count(MARK) == 2


def test_a_kernel_as_large_as_the_input_is_one_gemm_and_a_dynamic_batch_works() -> None:
    lucid.random.seed(2)
    model = Squeeze(6, 10, 3)  # 3x3 kernel over a 3x3 input: one pixel, window = the image
    x = np.random.default_rng(2).standard_normal((7, 6, 3, 3)).astype(np.float32)
    assert _check(model, x).count(MARK) == 2
    assert _check(model, x, dynamic=True).count(MARK) == 2


@pytest.mark.parametrize(
    ("kernel", "groups", "padding", "size", "one_gemm"),
    [(1, 2, 0, 1, 1), (3, 1, 1, 1, 1), (2, 1, 0, 3, 0)],
    ids=["grouped", "padded", "window-smaller-than-input"],
)
def test_other_convs_keep_their_per_image_gemms(
    kernel: int, groups: int, padding: int, size: int, one_gemm: int
) -> None:
    """fc1 never qualifies here (grouped; padded; a 2x2 window on a 3x3 input); fc2, a 1x1 conv,
    does when fc1 leaves one pixel (the first two cases), not on fc1's 2x2 output."""
    lucid.random.seed(3)
    model = Squeeze(8, 4, kernel, groups=groups, padding=padding)
    x = np.random.default_rng(3).standard_normal((4, 8, size, size)).astype(np.float32)
    assert _check(model, x).count(MARK) == one_gemm
