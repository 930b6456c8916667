"""Random eager programs: trace -> print -> parse -> print is the identity, and interpreting the
traced graph gives what eager lucid computed (hypothesis, derandomized)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import lucid
from lucid import nn
from lucid.ir import format_graph, interpret, parse, trace
from lucid.nn import functional as F
from lucid.tensor import Tensor

WIDTH = 6

# Each step maps (module, x [B, WIDTH]) -> x [B, WIDTH]; params come from the module, so they
# trace as graph params. Inputs of log/sqrt are made positive first, as a user would.
Step = Callable[["Program", Tensor], Tensor]
STEPS: dict[str, Step] = {
    "add_param": lambda m, x: x + m.bias,
    "sub_scalar": lambda m, x: x - 0.25,
    "mul_param": lambda m, x: x * m.scale,
    "div_scalar": lambda m, x: x / 3.0,
    "rdiv": lambda m, x: 1.0 / (x.abs() + 1.0),
    "neg": lambda m, x: -x,
    "square": lambda m, x: x**2,
    "hardswish": lambda m, x: F.hardswish(x),
    "hardsigmoid": lambda m, x: F.hardsigmoid(x),
    "relu": lambda m, x: F.relu(x),
    "relu6": lambda m, x: F.relu6(x * 4.0),
    "sigmoid": lambda m, x: F.sigmoid(x),
    "tanh": lambda m, x: F.tanh(x),
    "exp": lambda m, x: lucid.exp(x.clip(-5.0, 5.0)),
    "log": lambda m, x: lucid.log(x.abs() + 0.5),
    "sqrt": lambda m, x: lucid.sqrt(x.abs()),
    "clip": lambda m, x: x.clip(-0.5, 1.0),
    "maximum": lambda m, x: lucid.maximum(x, m.bias),
    "minimum": lambda m, x: lucid.minimum(x, m.scale),
    "linear": lambda m, x: m.fc(x),
    "matmul": lambda m, x: x @ m.square,
    "mean_keep": lambda m, x: x - x.mean(axis=1, keepdims=True),
    "sum_keep": lambda m, x: x * x.sum(axis=0, keepdims=True),
    "reshape_t": lambda m, x: x.reshape(-1, 2, WIDTH // 2).transpose(0, 2, 1).reshape(-1, WIDTH),
    "double_t": lambda m, x: x.T.T,
    "broadcast": lambda m, x: x + m.bias.reshape(1, WIDTH).broadcast_to(x.shape),
}


class Program(nn.Module):
    """Applies a list of named steps; its parameters are shared by the steps that use them."""

    def __init__(self, steps: list[str], dtype: type) -> None:
        super().__init__()
        self.steps = steps
        self.fc = nn.Linear(WIDTH, WIDTH, dtype=dtype)
        self.bias = nn.Parameter(lucid.randn(WIDTH).astype(dtype).data)
        self.scale = nn.Parameter(lucid.randn(WIDTH).astype(dtype).data)
        self.square = nn.Parameter(lucid.randn(WIDTH, WIDTH).astype(dtype).data * 0.3)

    def forward(self, x: Tensor) -> Tensor:
        for name in self.steps:
            x = STEPS[name](self, x)
        return x.sum(axis=1) if "mean_keep" in self.steps else x


@settings(max_examples=120, deadline=None, derandomize=True)
@given(
    steps=st.lists(st.sampled_from(sorted(STEPS)), min_size=1, max_size=8),
    dtype=st.sampled_from([np.float32, np.float64]),
    batch=st.integers(1, 5),
    dynamic=st.booleans(),
)
def test_random_programs_trace_round_trip_and_interpret_like_eager(
    steps: list[str], dtype: type, batch: int, dynamic: bool
) -> None:
    lucid.random.seed(len(steps) * 31 + batch)
    model = Program(steps, dtype)
    x = Tensor(np.random.default_rng(batch).standard_normal((batch, WIDTH)).astype(dtype))
    with lucid.no_grad():
        expected = model(x).data

    graph = trace(model, x, dynamic_batch=dynamic)
    text = format_graph(graph)
    assert format_graph(parse(text)) == text

    params = {name: p.data for name, p in model.named_parameters()}
    (got,) = interpret(parse(text), x.data, params=params)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    # Elementwise ops share eager's NumPy kernels; only GEMM/reduction order could differ.
    np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=0)
