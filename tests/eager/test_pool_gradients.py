"""Float64 central-difference checks of the pooling and padding gradients (eager tape), and of
the same rules run by the IR reverse pass. Max pooling is checked away from ties: inputs are a
permutation spaced 0.1 apart, far more than the 1e-6 step."""

from __future__ import annotations

import numpy as np
import pytest

import lucid.nn.functional as F
from lucid import Tensor, nn
from lucid.ir import grad, interpret, trace

from .gradcheck import check_grads


def _spaced(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) * 0.1 - n * 0.05


MAX_CASES = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 0), "dilation": (2, 1)},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": 2, "stride": 1, "dilation": 2, "ceil_mode": True},
]


@pytest.mark.parametrize("kw", MAX_CASES)
def test_max_pool2d_gradient(kw: dict) -> None:
    check_grads(lambda x: F.max_pool2d(x, **kw), _spaced((2, 2, 7, 6)))


AVG_CASES = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
    {"kernel_size": (2, 3), "stride": 1, "padding": (1, 1), "ceil_mode": True},
    {"kernel_size": 3, "stride": (1, 2), "count_include_pad": False},
]


@pytest.mark.parametrize("kw", AVG_CASES)
def test_avg_pool2d_gradient(kw: dict) -> None:
    x = np.random.default_rng(1).standard_normal((2, 2, 7, 6))
    check_grads(lambda t: F.avg_pool2d(t, **kw), x)


@pytest.mark.parametrize("out", [1, (3, 2), (4, 4), (7, 6), (2, 5)])
def test_adaptive_avg_pool2d_gradient(out: object) -> None:
    x = np.random.default_rng(2).standard_normal((2, 2, 7, 6))
    check_grads(lambda t: F.adaptive_avg_pool2d(t, out), x)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("pads", [(2, 1), (1, 3, 2, 2), (0, 2, 1, 0, 1, 1)])
def test_pad_gradient(mode: str, pads: tuple[int, ...]) -> None:
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 5))
    check_grads(lambda t: F.pad(t, pads, mode, 0.25 if mode == "constant" else None), x)


def test_pad_gradient_with_cropping() -> None:
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 5))
    check_grads(lambda t: F.pad(t, (-1, 2, 1, -2)), x)


def test_one_d_pooling_gradients() -> None:
    check_grads(lambda t: F.max_pool1d(t, 3, 2, 1, ceil_mode=True), _spaced((2, 3, 9)))
    check_grads(lambda t: F.avg_pool1d(t, 3, 2, 1, count_include_pad=False), _spaced((2, 3, 9)))
    check_grads(lambda t: F.adaptive_avg_pool1d(t, 4), _spaced((2, 3, 9)))


class _Net(nn.Module):
    """Every op of the family in one chain, so one reverse pass covers them all."""

    def forward(self, x):  # type: ignore[no-untyped-def]
        h = F.pad(x, (1, 2, 2, 1), "reflect")
        h = F.max_pool2d(h, 3, 1, 1, dilation=(1, 2), ceil_mode=True)
        h = F.pad(h, (1, 0, 0, 1), value=-1.0) * h.sum()
        h = F.avg_pool2d(h, 2, 1, 1, ceil_mode=True, count_include_pad=False)
        h = F.pad(h, (2, 2, 1, 1), "replicate")
        h = F.pad(h, (1, 1, 1, 1), "circular")
        return F.adaptive_avg_pool2d(h, (3, 2)).sum() + F.adaptive_avg_pool2d(h, 1).sum()


def test_ir_reverse_pass_matches_eager_tape() -> None:
    x = _spaced((2, 2, 6, 5)) / 10.0
    net = _Net()
    t = Tensor(x, requires_grad=True)
    net(t).backward()
    graph = trace(net, Tensor(x))
    r = grad(graph, wrt_inputs=[True])
    saved = interpret(r.forward, x)
    (got,) = interpret(r.backward, *r.backward_args([x], [], saved, [np.float64(1.0)]))
    np.testing.assert_allclose(got, t.grad, rtol=1e-12, atol=1e-14)
    check_grads(lambda v: net(v), x)
