"""Dynamic-batch backward when no batch-sized value reaches the backward graph (issue 14): a
loss on the input alone gives the gradient as a broadcast of the scalar cotangent, and the
batch size must still come from somewhere at run time."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.ir import grad, interpret, trace
from tests.runtime.test_compile_models import BACKENDS


class Loss(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.fc = nn.Linear(4, 2)

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        if self.kind == "sum":
            return x.sum()
        if self.kind == "scaled_mean":
            return (x * 2.0).mean()
        return x.mean() + self.fc(x).sum()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["sum", "scaled_mean", "mixed"])
def test_gradients_match_eager_at_every_batch(kind: str, backend: str) -> None:
    lucid.random.seed(4)
    model = Loss(kind)
    compiled = lucid.compile(model, backend=backend, dynamic_batch=True)
    rng = np.random.default_rng(5)
    for batch in (3, 5, 1, 8):
        x = rng.standard_normal((batch, 4)).astype(np.float32)
        grads = []
        for run in (model, compiled):
            xt = lucid.Tensor(x, requires_grad=True)
            run(xt).backward()
            grads.append(xt.grad)
        np.testing.assert_allclose(grads[1], grads[0], rtol=1e-6, atol=1e-7, err_msg=f"{batch}")


def test_the_backward_graph_reads_the_batch_from_the_saved_input() -> None:
    model = Loss("scaled_mean")
    graph = trace(model, np.ones((3, 4), np.float32), dynamic_batch=True)
    r = grad(graph)
    assert [t.shape for t in r.backward.input_types] == [("N", 4), ()]  # x, then d_out0
    x = np.ones((6, 4), np.float32)
    params = [p.data for _, p in model.named_parameters()]
    outs = interpret(r.forward, x, *params)
    gx = interpret(r.backward, *r.backward_args([x], params, outs, [np.float32(1.0)]))[0]
    np.testing.assert_allclose(gx, np.full((6, 4), 2.0 / 24, np.float32), rtol=1e-6)
