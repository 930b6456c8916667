"""Random graphs (hypothesis, derandomized) through emit_c against the interpreter.

Each example is one graph of several independent chains of ops (one build per example keeps the
compile count low): chains start at an input, apply 1-3 elementwise/shape steps and may end in a
reduction, GEMM, loss or shape op. Every compiled graph runs at two batch sizes (one build) and
is compared with the interpreter in its own dtype; float32 graphs are also compared with the
float64 interpretation of the same graph: the C must be as close to it as NumPy's float32 is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lucid.ir import Builder, DType, TensorType, interpret
from lucid.ir.core import Graph, Value
from tests.codegen.test_c_harness import compile_graph

pytestmark = [pytest.mark.needs_cc, pytest.mark.slow]

UNARY = [
    "neg",
    "abs",
    "sign",
    "hardswish",
    "hardsigmoid",
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "exp",
    "log",
    "sqrt",
    "stop_gradient",
]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum"]
COMPARE = ["less", "less_equal", "greater", "greater_equal", "equal", "not_equal"]
GRADS = ["hardswish_grad", "hardsigmoid_grad", "relu_grad", "relu6_grad", "clip_grad"]
TERMINAL = [
    "none",
    "sum",
    "mean",
    "linear",
    "matmul",
    "mse_loss",
    "cross_entropy",
    "cross_entropy_grad",
    "sum_to",
    "broadcast",
    "transpose",
]

step = st.one_of(
    st.tuples(st.just("unary"), st.sampled_from(UNARY)),
    st.tuples(st.just("pow"), st.sampled_from([2.0, 0.5, -1.0, 3.0, 1.5])),
    st.tuples(st.just("clip"), st.sampled_from([(-1.0, 1.0), (0.0, None), (None, 0.5)])),
    st.tuples(st.just("binary"), st.sampled_from(BINARY), st.integers(0, 4), st.booleans()),
    st.tuples(st.just("where"), st.sampled_from(COMPARE), st.integers(0, 4)),
    st.tuples(st.just("grad"), st.sampled_from(GRADS)),
    st.tuples(
        st.just("extremum_grad"),
        st.sampled_from(["maximum_grad", "minimum_grad"]),
        st.integers(0, 1),
    ),
    st.tuples(st.just("cast"), st.sampled_from(["other", "bool"])),
    st.tuples(st.just("shuffle")),
)
chain = st.tuples(
    st.sampled_from([0, 1, 2]),  # start: x, y (batch-shaped) or v ([4])
    st.lists(step, min_size=1, max_size=3),
    st.sampled_from(TERMINAL),
    st.sets(st.integers(0, 1), max_size=2),  # reduction axes
    st.booleans(),  # keepdims
)
recipe = st.tuples(
    st.sampled_from([DType.F32, DType.F64]),
    st.one_of(st.just("N"), st.integers(1, 9)),
    st.lists(chain, min_size=6, max_size=9),
)


def build(r: Any, dt: DType) -> Graph:
    """The graph of recipe `r` in float type `dt` (the same structure for every dt)."""
    _, batch, chains = r
    b = Builder("random")
    bt = TensorType(dt, (batch, 4))
    ins = [
        b.input(bt, "x"),
        b.input(bt, "y"),
        b.input(TensorType(dt, (4,)), "v"),
        b.input(TensorType(dt, (batch, 1)), "col"),
        b.input(TensorType(dt, ()), "s"),
    ]
    target = b.input(TensorType(DType.I64, (batch,)), "target")
    w, bias = b.param(TensorType(dt, (3, 4)), "w"), b.param(TensorType(dt, (3,)), "b")
    gemms = 0
    for start, steps, term, axes, keep in chains:
        cur = ins[start]
        for s in steps:
            cur = _step(b, s, cur, ins, dt)
        if term in ("linear", "matmul") and gemms >= 2:
            term = "none"  # each GEMM adds a big fragment: keep builds fast
        gemms += term in ("linear", "matmul")
        b.output(_terminal(b, term, cur, ins, target, w, bias, axes, keep, batch))
    return b.build()


def _partners(cur: Value, ins: list[Value]) -> list[Value]:
    """Inputs that broadcast with `cur` (a batch-shaped value takes them all)."""
    return ins if cur.type.rank == 2 else [ins[2], ins[4]]


def _step(b: Builder, s: tuple[Any, ...], cur: Value, ins: list[Value], dt: DType) -> Value:
    kind = s[0]
    same = ins[0] if cur.type.rank == 2 else ins[2]
    if kind == "unary":
        return b.op(s[1], [cur])
    if kind == "pow":
        return b.op("pow", [cur], {"exponent": s[1]})
    if kind == "clip":
        return b.op("clip", [cur], {"min": s[1][0], "max": s[1][1]})
    if kind == "binary":
        other = _partners(cur, ins)[s[2] % len(_partners(cur, ins))]
        out = b.op(s[1], [other, cur] if s[3] else [cur, other])
        return (
            out
            if out.type.shape == cur.type.shape
            else b.op("sum_to", [out], {"shape": cur.type.shape})
        )
    if kind == "where":
        other = _partners(cur, ins)[s[2] % len(_partners(cur, ins))]
        out = b.op("where", [b.op(s[1], [cur, other]), cur, other])
        return (
            out
            if out.type.shape == cur.type.shape
            else b.op("sum_to", [out], {"shape": cur.type.shape})
        )
    if kind == "grad":
        attrs = {"min": -0.5, "max": 1.0} if s[1] == "clip_grad" else None
        return b.op(s[1], [cur, same], attrs)
    if kind == "extremum_grad":
        return b.op_multi(s[1], [cur, same, same])[s[2]]
    if kind == "cast":
        to = (DType.F64 if dt is DType.F32 else DType.F32) if s[1] == "other" else DType.BOOL
        return b.op("cast", [b.op("cast", [cur], {"dtype": to})], {"dtype": dt})
    # shuffle: reshape (alias) -> transpose (kernel) -> reshape back (alias)
    shape = (-1, 2, 2) if cur.type.rank == 2 else (2, 2)
    perm = (0, 2, 1) if cur.type.rank == 2 else (1, 0)
    t = b.op("transpose", [b.op("reshape", [cur], {"shape": shape})], {"perm": perm})
    return b.op("reshape", [t], {"shape": (-1, 4) if cur.type.rank == 2 else (4,)})


def _terminal(
    b: Builder,
    term: str,
    cur: Value,
    ins: list[Value],
    target: Value,
    w: Value,
    bias: Value,
    axes: set[int],
    keep: bool,
    batch: Any,
) -> Value:
    batched = cur.type.rank == 2
    if term in ("sum", "mean"):
        ax = tuple(a for a in sorted(axes) if a < cur.type.rank) or None
        return b.op(term, [cur], {"axes": ax, "keepdims": keep})
    if term == "linear":
        return b.op("linear", [cur, w, bias])
    if term == "matmul":
        return b.op("matmul", [cur, b.op("transpose", [w], {"perm": None})])
    if term == "mse_loss":
        return b.op("mse_loss", [cur, ins[1] if batched else ins[2]])
    if term in ("cross_entropy", "cross_entropy_grad") and batched:
        loss = b.op("cross_entropy", [cur, target])
        return loss if term == "cross_entropy" else b.op("cross_entropy_grad", [cur, target, loss])
    if term == "sum_to" and batched:
        return b.op("sum_to", [cur], {"shape": (1, 4)})
    if term == "broadcast":
        return b.op("broadcast", [cur], {"shape": (2, *cur.type.shape)})
    if term == "transpose":
        return b.op("transpose", [cur], {"perm": None})
    return cur


def _inputs(batch: int, dt: DType, rng: np.random.Generator) -> list[np.ndarray]:
    t = dt.np
    return [
        rng.standard_normal((batch, 4)).astype(t) * 2,
        rng.standard_normal((batch, 4)).astype(t) * 2,
        rng.standard_normal(4).astype(t),
        rng.standard_normal((batch, 1)).astype(t),
        np.array(rng.standard_normal(), t),
        rng.integers(0, 4, batch).astype(np.int64),
        rng.standard_normal((3, 4)).astype(t),
        rng.standard_normal(3).astype(t),
    ]


# No shrinking: every shrink step is a C build; the failing recipe is printed as drawn.
@settings(
    derandomize=True,
    max_examples=20,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(recipe)
def test_random_graphs_match_the_interpreter(r: Any) -> None:
    dt, batch, _ = r
    graph = build(r, dt)
    c = compile_graph(graph)
    ref64_graph = build(r, DType.F64) if dt is DType.F32 else None
    rng = np.random.default_rng(len(r[2]))
    sizes = (1, 23) if batch == "N" else (batch,)
    rtol, atol = (4e-6, 4e-5) if dt is DType.F32 else (1e-7, 1e-12)
    for n in sizes:
        args = _inputs(n, dt, rng)
        with np.errstate(all="ignore"):
            want = interpret(graph, *args)
            want64 = (
                interpret(
                    ref64_graph, *(a.astype(np.float64) if a.dtype.kind == "f" else a for a in args)
                )
                if ref64_graph
                else None
            )
        got = c.run(args, nthreads=2)
        assert len(got) == len(want)
        for k, (a, e) in enumerate(zip(got, want)):
            np.testing.assert_allclose(
                a, e, rtol=rtol, atol=atol, err_msg=f"output {k} at batch {n}"
            )
            if want64 is not None:
                e64 = want64[k].astype(np.float64)
                both = np.isfinite(e64) & np.isfinite(e.astype(np.float64)) & np.isfinite(a)
                exact, numpy_val, c_val = (
                    e64[both],
                    e.astype(np.float64)[both],
                    a.astype(np.float64)[both],
                )
                bound = np.abs(numpy_val - exact) + atol + rtol * np.abs(exact)
                assert np.all(np.abs(c_val - exact) <= bound), (
                    f"output {k}: further from f64 than NumPy"
                )
