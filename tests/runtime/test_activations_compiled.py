"""GELU, LeakyReLU, ELU, Softplus, Hardtanh, Softmax and LogSoftmax compiled: each elementwise
activation fuses into the GEMM before it, and static and dynamic batch match eager, forward and
backward."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
from lucid import nn

# each test runs inference, then grad mode: that recompiles by design, with a warning
pytestmark = pytest.mark.filterwarnings("ignore::lucid.errors.RecompileWarning")

ACTIVATIONS = [
    nn.GELU(),
    nn.LeakyReLU(0.2),
    nn.ELU(alpha=0.7),
    nn.Softplus(beta=2.0, threshold=3.0),
    nn.Hardtanh(-0.5, 0.8),
    nn.GELU(approximate="tanh"),
]
OPS = ["gelu", "leaky_relu", "elu", "softplus", "hardtanh", "gelu"]


class Chain(nn.Module):
    """Linear -> act -> Linear -> act ... -> Linear -> (log_)softmax along `dim`."""

    def __init__(self, dim: int, log: bool, dtype: type = np.float32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(
                m
                for k, act in enumerate(ACTIVATIONS)
                for m in (nn.Linear(6 if k == 0 else 12, 12, dtype=dtype), act)
            ),
            nn.Linear(12, 5, dtype=dtype),
        )
        self.head = nn.LogSoftmax(dim) if log else nn.Softmax(dim)

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        return self.head(self.layers(x))


def _check(model: nn.Module, compiled: nn.Module, x: np.ndarray, tol: dict) -> None:
    """Forward (no grad), then input and parameter gradients of a weighted sum, vs eager."""
    with lucid.no_grad():
        np.testing.assert_allclose(
            compiled(lucid.Tensor(x)).data, model(lucid.Tensor(x)).data, **tol
        )
    w = (
        np.random.default_rng(x.shape[0])
        .standard_normal(model(lucid.Tensor(x)).shape)
        .astype(x.dtype)
    )
    grads = []
    for run in (model, compiled):
        for p in model.parameters():
            p.grad = None
        xt = lucid.Tensor(x, requires_grad=True)
        (run(xt) * lucid.Tensor(w)).sum().backward()
        grads.append([xt.grad, *(p.grad for p in model.parameters())])
    for got, want in zip(grads[1], grads[0]):
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.needs_cc
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_activation_chain_fuses_and_matches_eager_static_and_dynamic(log: bool) -> None:
    lucid.random.seed(7)
    model = Chain(-1, log)
    rng = np.random.default_rng(0)
    tol = {"rtol": 2e-5, "atol": 2e-6}
    static = lucid.compile(model)
    x = (rng.standard_normal((9, 6)) * 2).astype(np.float32)
    with lucid.no_grad():  # inference first: the forward-only graph, where fusion applies
        static(lucid.Tensor(x))
        optimized = str(static.graph())
    # every elementwise activation went inside a fused GEMM node (at these widths the whole MLP
    # is one fused_mlp; tests/ir/passes/fuse_epilogue_activations.lir checks fused_gemm)
    top = [line for line in optimized.splitlines() if line.startswith("  %")]
    for op in OPS:
        assert not any(f" = {op} " in line for line in top), optimized
        assert f" = {op} " in optimized, optimized
    assert any(" = fused_mlp " in line or " = fused_gemm " in line for line in top), optimized
    _check(model, static, x, tol)

    dynamic = lucid.compile(model, dynamic_batch=True)
    for batch in (1, 4, 13):
        _check(model, dynamic, (rng.standard_normal((batch, 6)) * 2).astype(np.float32), tol)


@pytest.mark.slow
@pytest.mark.needs_cc
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_along_the_symbolic_batch_axis_float64(log: bool) -> None:
    """dim=0 is the batch axis: the C reads the run-time batch as the softmax length."""
    lucid.random.seed(8)
    model = Chain(0, log, dtype=np.float64)
    dynamic = lucid.compile(model, dynamic_batch=True)
    rng = np.random.default_rng(1)
    for batch in (2, 7, 1):
        x = rng.standard_normal((batch, 6)) * 2
        _check(model, dynamic, x, {"rtol": 1e-11, "atol": 1e-13})


class Middle(nn.Module):
    """Linear -> [N, 3, 4] -> softmax over the middle axis (the symbol is the outer extent),
    then log_softmax over the last (the symbol times 3 rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 12, dtype=np.float64)

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        return self.fc(x).reshape(-1, 3, 4).softmax(1).log_softmax(-1)


@pytest.mark.needs_cc
def test_softmax_over_a_middle_axis_with_dynamic_batch() -> None:
    lucid.random.seed(9)
    model = Middle()
    dynamic = lucid.compile(model, dynamic_batch=True)
    rng = np.random.default_rng(2)
    for batch in (3, 1, 5):
        _check(model, dynamic, rng.standard_normal((batch, 6)), {"rtol": 1e-11, "atol": 1e-13})


class Softmaxes(nn.Module):
    """softmax along `dim`, and log_softmax along it, side by side."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        return lucid.stack([x.softmax(self.dim), x.log_softmax(self.dim)])


@pytest.mark.needs_cc
@pytest.mark.parametrize(
    ("shape", "dim"),
    [
        ((5, 3, 70), -1),  # 15 contiguous rows of 70: vector folds and a tail; 3 groups + 3
        ((2, 3, 32), 2),  # 6 rows of exactly two vectors: one group of 4, then 2 alone
        ((5, 37, 7), 1),  # rows strided by 7: a group of 4 interleaved rows, then 3 alone
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_side_by_side_match_eager_and_each_row_alone(shape, dim, dtype) -> None:  # type: ignore[no-untyped-def]
    """softmax_part.c.j2 computes several rows at once: against eager (float32 tolerance,
    1e-12 in float64), and each image's rows equal, bit for bit, what a batch of that image
    alone gives (other rows beside it, or none). A NaN poisons its own row only."""
    model = Softmaxes(dim)
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    x[1].flat[4] = np.nan  # image 1: one row (softmax's row of that element) all NaN
    full = lucid.compile(model, dynamic_batch=True)
    with lucid.no_grad():
        got = full(lucid.Tensor(x)).data
        want = model(lucid.Tensor(x)).data
        tol = 1e-12 if dtype == np.float64 else 2e-6
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        for i in range(shape[0]):
            alone = full(lucid.Tensor(x[i : i + 1])).data
            np.testing.assert_array_equal(alone[:, 0], got[:, i])
    nan_rows = np.isnan(got[0]).all(axis=dim)
    assert nan_rows.sum() == 1 and nan_rows[1].any(), nan_rows
    assert not np.isnan(
        got[0][~np.isnan(x).any(axis=dim, keepdims=True).repeat(shape[dim], dim)]
    ).any()
