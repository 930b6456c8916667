"""A float64 -> float32 -> float64 round trip rounds in compiled code as in eager (found by
tests/fuzz): GCC 12's SLP vectorizer folded `(double)(float)x` to `x` in short static loops,
so the compiled result kept digits that eager's astype drops."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
from lucid import nn


class RoundTrip(nn.Module):
    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        return x.astype(np.float32).astype(np.float64) * 3.0


@pytest.mark.needs_cc
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("shape", [(1, 2), (3, 4), (5, 7)])
def test_narrowing_round_trip_rounds_like_eager(shape: tuple[int, int], dynamic: bool) -> None:
    model = RoundTrip()
    x = lucid.Tensor(1.0 / np.arange(3, 3 + np.prod(shape), dtype=np.float64).reshape(shape))
    with lucid.no_grad():
        want = model(x).data
        got = lucid.compile(model, dynamic_batch=dynamic)(x).data
    assert not np.array_equal(want, x.data * 3.0)  # the round trip does lose digits here
    np.testing.assert_array_equal(got, want)


@pytest.mark.needs_cc
def test_narrowing_round_trip_gradient_rounds_like_eager() -> None:
    model = RoundTrip()
    data = 1.0 / np.arange(3, 7, dtype=np.float64).reshape(2, 2)
    grads = []
    for fn in (model, lucid.compile(model)):
        x = lucid.Tensor(data, requires_grad=True)
        fn(x).backward(np.full((2, 2), 1.0 / 3.0))  # the cotangent rounds through float32 too
        grads.append(x.grad)
    np.testing.assert_array_equal(grads[1], grads[0])
