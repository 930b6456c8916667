"""Graphs and helpers shared by the IR tests."""

from __future__ import annotations

from lucid.ir import Builder, DType, Graph, TensorType


def f32(*shape: int | str) -> TensorType:
    """Shorthand for an f32 tensor type."""
    return TensorType(DType.F32, tuple(shape))


def showcase() -> Graph:
    """A graph with every text feature: fused multi-result region, attrs of each kind, locs."""
    from lucid.errors import SourceLoc

    b = Builder("showcase")
    x = b.input(f32("N", 5), "x")
    t = b.input(TensorType(DType.I64, ("N",)), "target")
    w = b.param(f32(2, 5), "fc.weight")
    odd = b.param(f32(2), 'head "bias"')
    body = Builder("body")
    bx, bw = body.input(f32("N", 5)), body.input(f32(2, 5))
    y = body.op("linear", [bx, bw])
    body.output(body.op("relu", [y]), body.op("sum", [y], {"axes": (0,)}))
    act, colsum = b.op_multi(
        "fused_gemm", [x, w], body=body.build(), loc=SourceLoc("model.py", 12, "forward")
    )
    shifted = b.op("add", [act, odd], loc=SourceLoc('dir with "quotes"/m.py', 3))
    c = b.constant([[0.1, -2.5e-08], [float("inf"), -0.0]])
    clipped = b.op("clip", [shifted], {"min": None, "max": 6.0})
    loss = b.op("cross_entropy", [clipped, t], {"reduction": "sum"})
    flag = b.op("cast", [b.op("greater", [colsum, b.constant(0.5)])], {"dtype": DType.F32})
    b.output(loss, flag, c)
    return b.build()
