"""Float64 central-difference checks of the normalization layers' gradients (eager tape) and of
the IR reverse pass against the tape."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import nn
from lucid.ir import grad, interpret
from lucid.ir.trace import trace
from lucid.nn import normalization as N
from tests.eager.gradcheck import check_grads


def _x(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape) * 2 + 0.5


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 5), (3, 3, 2, 4)])
def test_batch_norm_training_gradients(shape: tuple[int, ...]) -> None:
    c = shape[1]
    rng = np.random.default_rng(1)
    check_grads(
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        _x(shape),
        rng.standard_normal(c),
        rng.standard_normal(c),
    )


def test_batch_norm_eval_gradients_reach_the_running_statistics() -> None:
    rng = np.random.default_rng(2)
    check_grads(
        lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b, training=False, eps=0.1),
        _x((4, 3, 2)),
        rng.standard_normal(3),
        rng.uniform(0.5, 2.0, 3),
        rng.standard_normal(3),
        rng.standard_normal(3),
    )


@pytest.mark.parametrize(("shape", "normalized"), [((4, 6), (6,)), ((2, 3, 4, 5), (4, 5))])
def test_layer_norm_gradients(shape: tuple[int, ...], normalized: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    check_grads(
        lambda x, w, b: F.layer_norm(x, normalized, w, b),
        _x(shape),
        rng.standard_normal(normalized),
        rng.standard_normal(normalized),
    )


@pytest.mark.parametrize(("groups", "shape"), [(2, (3, 4, 5)), (3, (2, 6, 2, 2))])
def test_group_norm_gradients(groups: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(4)
    c = shape[1]
    check_grads(
        lambda x, w, b: F.group_norm(x, groups, w, b),
        _x(shape),
        rng.standard_normal(c),
        rng.standard_normal(c),
    )


class _Rows(nn.Module):
    """[N, C, H, W] -> [N, C, H * W], then the wrapped layer (BatchNorm1d's 3-D input)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        return self.inner(x.reshape(x.shape[0], x.shape[1], -1))


@pytest.mark.parametrize(
    "make",
    [
        lambda: N.BatchNorm2d(3, dtype=np.float64),
        lambda: _Rows(N.BatchNorm1d(3, dtype=np.float64, track_running_stats=False)),
        lambda: N.LayerNorm((2, 4), dtype=np.float64),
        lambda: N.GroupNorm(3, 3, dtype=np.float64),
    ],
    ids=["batchnorm2d", "batchnorm1d_untracked", "layernorm", "groupnorm"],
)
def test_ir_reverse_pass_matches_the_tape(make) -> None:
    """The traced graph's backward (autodiff over the IR) against eager backward, float64."""
    model = make()
    rng = np.random.default_rng(5)
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    x = _x((3, 3, 2, 4))
    xt = lucid.tensor(x, requires_grad=True)
    y = model(xt)
    g = rng.standard_normal(y.shape)
    state: list[str] = []
    graph = trace(model, x, state=state)
    result = grad(graph)
    params = [dict(model.named_parameters(), **dict(model.named_buffers()))[p.hint].data
              for p in graph.params]  # fmt: skip
    outs = interpret(result.forward, x, *params)
    n = result.num_outputs
    cts = [g] + [np.zeros_like(o) for o in outs[1:n]]
    got = interpret(result.backward, *result.backward_args([x], params, outs, cts))
    y.backward(g)
    np.testing.assert_allclose(got[0], xt.grad, rtol=1e-10, atol=1e-10)
    trained = [p for p in graph.params if p.type.dtype.is_float]
    for value, gp in zip(graph.params, got[1:]):
        if value in trained and value.hint in dict(model.named_parameters()):
            want = dict(model.named_parameters())[value.hint].grad
            np.testing.assert_allclose(gp, want, rtol=1e-10, atol=1e-10, err_msg=value.hint)
