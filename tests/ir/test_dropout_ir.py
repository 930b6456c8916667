"""The dropout op in the IR: its type rule, text form, purity under the passes, and the seed
inputs a trace of training-mode Dropout gets (the runtime side: tests/runtime/)."""

from __future__ import annotations

import numpy as np
import pytest

from lucid import nn
from lucid.errors import IRTypeError
from lucid.ir import Builder, DType, TensorType, interpret, parse, trace
from lucid.ir.passes import PassManager
from lucid.ir.printer import format as format_graph

SEED = TensorType(DType.I64, ())


def _dropout_graph(seed_type: TensorType = SEED, x_dtype: DType = DType.F32, p: float = 0.5):
    b = Builder("f")
    x = b.input(TensorType(x_dtype, ("N", 4)), "x")
    s = b.input(seed_type, "rng_seed")
    b.output(b.op("dropout", [x, s], {"p": p}))
    return b.build()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 1.5}, "p must lie in"),
        ({"p": -0.1}, "p must lie in"),
        ({"seed_type": TensorType(DType.I64, (2,))}, "expected seed i64"),
        ({"seed_type": TensorType(DType.F32, ())}, "expected seed i64"),
        ({"x_dtype": DType.I64}, "expected a float tensor"),
    ],
)
def test_type_rule_refuses(kwargs, message) -> None:
    with pytest.raises(IRTypeError, match=message):
        _dropout_graph(**kwargs)


def test_text_round_trip_and_interpreter() -> None:
    text = format_graph(_dropout_graph())
    assert "%0 = dropout %x, %rng_seed {p=0.5} : f32[N,4]" in text
    assert format_graph(parse(text)) == text
    x = np.ones((3, 4), np.float32)
    (a,) = interpret(parse(text), x, np.array(7, np.int64))
    (b,) = interpret(parse(text), x, np.array(7, np.int64))
    (c,) = interpret(parse(text), x, np.array(8, np.int64))
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 2.0} and not np.array_equal(a, c)


def test_cse_merges_only_dropouts_of_the_same_seed() -> None:
    b = Builder("f")
    x = b.input(TensorType(DType.F32, (4, 4)), "x")
    s, t = b.input(SEED, "s"), b.input(SEED, "t")
    same = [b.op("dropout", [x, s], {"p": 0.5}) for _ in range(2)]
    other = b.op("dropout", [x, t], {"p": 0.5})
    b.output(*same, other)
    graph = PassManager(["cse", "dce"]).run(b.build())[0]
    assert [n.op for n in graph.nodes] == ["dropout", "dropout"]


class TwoDropouts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.a, self.b = nn.Dropout(0.25), nn.Dropout(0.5)

    def forward(self, x):
        return self.b(self.fc(self.a(x)))


def test_trace_makes_one_seed_input_per_draw_in_order() -> None:
    x = np.ones((2, 4), np.float32)
    graph = trace(TwoDropouts().train(), x, dynamic_batch=True)
    assert [v.type for v in graph.inputs] == [TensorType(DType.F32, ("N", 4)), SEED, SEED]
    drops = [n for n in graph.nodes if n.op == "dropout"]
    assert [n.inputs[1] for n in drops] == list(graph.inputs[1:])
    assert [n.attrs["p"] for n in drops] == [0.25, 0.5]
    assert "%rng_seed: i64[], %rng_seed_1: i64[]" in format_graph(graph)
    assert len(trace(TwoDropouts().eval(), x).inputs) == 1
