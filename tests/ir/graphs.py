"""Graphs and helpers shared by the IR tests."""

from __future__ import annotations

from lucid.ir import Builder, DType, Graph, TensorType


def f32(*shape: int | str) -> TensorType:
    """Shorthand for an f32 tensor type."""
    return TensorType(DType.F32, tuple(shape))


def seed_model() -> Graph:
    """The seed model: x f32[N,3] -> Linear(3,5) -> HardSwish -> Linear(5,2)."""
    b = Builder("forward")
    x = b.input(f32("N", 3), "x")
    w1 = b.param(f32(5, 3), "fc1.weight")
    b1 = b.param(f32(5), "fc1.bias")
    w2 = b.param(f32(2, 5), "fc2.weight")
    b2 = b.param(f32(2), "fc2.bias")
    h = b.op("hardswish", [b.op("linear", [x, w1, b1])])
    b.output(b.op("linear", [h, w2, b2]))
    return b.build()
