"""Every op of the table, lowered to C, against the interpreter: a few big graphs, few builds.

Elementwise ops must match NumPy bit for bit (NaN, infinities, -0.0 and subnormals included),
except those calling libm (exp, log, tanh, sigmoid, generic pow); reductions, GEMMs and losses
are judged with the tolerances of the issue (float32: rtol 1.3e-6, atol 1e-5; float64: 1e-7).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from lucid.codegen.lowerings import INLINE, LOWERINGS
from lucid.ir import OPS, Builder, DType, TensorType, interpret
from lucid.ir.core import Value
from tests.codegen.test_c_harness import compile_graph

LIBM = {"exp", "log", "tanh", "sigmoid", "pow_gen"}
EXACT, LIBM_TOL, SUM_TOL = "exact", "libm", "sum"

SPECIALS = [
    np.nan,
    np.inf,
    -np.inf,
    -0.0,
    0.0,
    1e-40,
    -1e-42,
    3.0,
    -3.0,
    6.0,
    0.5,
    -0.5,
    1e30,
    -1e30,
    2.0,
    -1.0,
]


def assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Bitwise equality up to NaN payloads: same NaN positions, same values and signs of zero."""
    assert got.shape == want.shape and got.dtype == want.dtype, what
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg=what)
    np.testing.assert_array_equal(got[~nan], want[~nan], err_msg=what)
    np.testing.assert_array_equal(np.signbit(got[~nan]), np.signbit(want[~nan]), err_msg=what)


class G:
    """A Builder that records, per output, its name and how to compare it."""

    def __init__(self, name: str) -> None:
        self.b = Builder(name)
        self.checks: list[tuple[str, str]] = []
        self.ops_used: set[str] = set()

    def out(
        self, label: str, mode: str, op: str, inputs: list[Value], attrs: dict | None = None
    ) -> Value:
        v = self.b.op(op, inputs, attrs)
        self.ops_used.add(op)
        self.b.output(v)
        self.checks.append((label, mode))
        return v

    def multi(self, label: str, mode: str, op: str, inputs: list[Value]) -> None:
        vs = self.b.op_multi(op, inputs)
        self.ops_used.add(op)
        for k, v in enumerate(vs):
            self.b.output(v)
            self.checks.append((f"{label}[{k}]", mode))


def float_graph(dt: DType) -> tuple[G, Callable[[int, np.random.Generator], list[np.ndarray]]]:
    """Every float op on a symbolic batch: special values for elementwise ops, finite values
    (xf, yf) for reductions, GEMMs and losses."""
    g = G(f"ops_{dt}")
    b = g.b
    n4 = TensorType(dt, ("N", 4))
    x, y = b.input(n4, "x"), b.input(n4, "y")
    z = b.input(TensorType(dt, (4,)), "z")
    s = b.input(TensorType(dt, ()), "s")
    xf, yf = b.input(n4, "xf"), b.input(n4, "yf")
    tgt = b.input(TensorType(DType.I64, ("N",)), "target")
    w = b.param(TensorType(dt, (3, 4)), "w")
    bias = b.param(TensorType(dt, (3,)), "bias")

    for op in (
        "neg",
        "abs",
        "sign",
        "hardswish",
        "hardsigmoid",
        "relu",
        "relu6",
        "sqrt",
        "stop_gradient",
    ):
        g.out(op, EXACT, op, [x])
    for op in ("exp", "log", "tanh", "sigmoid"):
        g.out(op, LIBM_TOL, op, [x])
    for e in (2.0, 0.5, -1.0):
        g.out(f"pow{e}", EXACT, "pow", [x], {"exponent": e})
    g.out("pow3", LIBM_TOL, "pow", [x], {"exponent": 3.0})
    g.out("clip", EXACT, "clip", [x], {"min": -1.0, "max": 2.0})
    g.out("clip_lo", EXACT, "clip", [x], {"min": 0.5, "max": None})
    for op in (
        "add",
        "sub",
        "mul",
        "div",
        "maximum",
        "minimum",
        "less",
        "less_equal",
        "greater",
        "greater_equal",
        "equal",
        "not_equal",
    ):
        g.out(op, EXACT, op, [x, y])
        g.out(op + "_bcast", EXACT, op, [z, x])
    g.out("add_scalar", EXACT, "add", [x, s])
    g.out("where", EXACT, "where", [b.op("less", [x, y]), x, z])
    for op in ("hardswish_grad", "hardsigmoid_grad", "relu_grad", "relu6_grad"):
        g.out(op, EXACT, op, [x, y])
    g.out("clip_grad", EXACT, "clip_grad", [x, y], {"min": -3.0, "max": 0.5})
    g.multi("maximum_grad", EXACT, "maximum_grad", [x, z, y])
    g.multi("minimum_grad", "min_grad", "minimum_grad", [x, z, y])
    other = DType.F64 if dt is DType.F32 else DType.F32
    for to in (other, DType.I64, DType.BOOL):
        g.out(f"cast_{to}", EXACT, "cast", [x], {"dtype": to})
    g.out("cast_back", EXACT, "cast", [b.op("cast", [x], {"dtype": DType.BOOL})], {"dtype": dt})
    g.ops_used.add("constant")
    c = b.constant([[1.5, -0.0, float("inf"), 1e-45]], dt)
    g.out("mul_const", EXACT, "mul", [x, c])
    b.output(c)
    g.checks.append(("constant", EXACT))
    # shape ops: reshape as an output (copy), as an alias feeding a kernel, transposes
    g.out("reshape", EXACT, "reshape", [x], {"shape": (-1, 2, 2)})
    alias = b.op("reshape", [x], {"shape": (-1, 2, 2)})
    g.out("transpose", EXACT, "transpose", [alias], {"perm": (2, 0, 1)})
    g.out("transpose_rev", EXACT, "transpose", [x], {"perm": None})
    g.out("broadcast", EXACT, "broadcast", [z], {"shape": (3, "N", 4)})
    b.output(x)  # an input as an output: copied
    g.checks.append(("input_out", EXACT))
    # reductions and losses on finite values
    for axes in ((0,), (1,), None):
        g.out(f"sum{axes}", SUM_TOL, "sum", [xf], {"axes": axes})
        g.out(f"mean{axes}", SUM_TOL, "mean", [xf], {"axes": axes, "keepdims": True})
    g.out(
        "sum_to",
        SUM_TOL,
        "sum_to",
        [b.op("broadcast", [yf], {"shape": (2, "N", 4)})],
        {"shape": (1, 4)},
    )
    g.out("mse", SUM_TOL, "mse_loss", [xf, yf])
    g.out("mse_sum", SUM_TOL, "mse_loss", [xf, z], {"reduction": "sum"})
    g.out("ce", SUM_TOL, "cross_entropy", [xf, tgt])
    ce_sum = g.out("ce_sum", SUM_TOL, "cross_entropy", [xf, tgt], {"reduction": "sum"})
    g.out("ce_grad", SUM_TOL, "cross_entropy_grad", [xf, tgt, ce_sum])
    ce_none = g.out("ce_none", SUM_TOL, "cross_entropy", [xf, tgt], {"reduction": "none"})
    g.out("ce_none_grad", SUM_TOL, "cross_entropy_grad", [xf, tgt, ce_none], {"reduction": "none"})
    g.out("matmul", SUM_TOL, "matmul", [xf, b.op("transpose", [w], {"perm": None})])
    g.out("linear", SUM_TOL, "linear", [xf, w, bias])
    g.out("linear_nobias", SUM_TOL, "linear", [yf, w])

    def inputs(batch: int, rng: np.random.Generator) -> list[np.ndarray]:
        t = dt.np
        sp = np.array(SPECIALS, t)
        xs = np.resize(sp, batch * 4).reshape(batch, 4)
        ys = np.resize(np.roll(sp, 5), batch * 4).reshape(batch, 4)
        ys[::3] = xs[::3]  # ties for maximum/minimum and equal
        return [
            xs,
            ys,
            np.array([0.0, -0.0, np.nan, 3.0], t),
            np.array(2.5, t),
            rng.standard_normal((batch, 4)).astype(t),
            rng.standard_normal((batch, 4)).astype(t),
            rng.integers(0, 4, batch).astype(np.int64),
            rng.standard_normal((3, 4)).astype(t),
            rng.standard_normal(3).astype(t),
        ]

    return g, inputs


def _check_all(
    g: G, got: list[np.ndarray], want: tuple[np.ndarray, ...], args: list[np.ndarray], dt: DType
) -> None:
    rtol = 1.3e-6 if dt is DType.F32 else 1e-7
    atol = 1e-5 if dt is DType.F32 else 1e-12
    assert len(g.checks) == len(got) == len(want)
    for (label, mode), a, e in zip(g.checks, got, want):
        if mode == EXACT:
            assert_same(a, e, label)
        elif mode == "min_grad":
            pass  # checked below against the definition
        else:
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=label)
    # minimum's cotangent: the smaller side gets g, a tie splits it (a, b, g) = (x, z, y)
    i = [lbl for lbl, _ in g.checks].index("minimum_grad[0]")
    x, z, y = args[0], args[2], args[1]
    half = y * y.dtype.type(0.5)
    ga = np.where(x < z, y, np.where(x == z, half, 0)).astype(y.dtype)
    gb = np.where(z < x, y, np.where(x == z, half, 0)).astype(y.dtype)
    assert_same(got[i], ga, "minimum_grad a")
    assert_same(got[i + 1], gb, "minimum_grad b")


@pytest.mark.parametrize("dt", [DType.F32, pytest.param(DType.F64, marks=pytest.mark.slow)])
@pytest.mark.needs_cc
def test_every_float_op_matches_numpy(dt: DType) -> None:
    g, make = float_graph(dt)
    graph = g.b.build()
    c = compile_graph(graph)
    rng = np.random.default_rng(5)
    for batch in (1, 5, 19):
        args = make(batch, rng)
        with np.errstate(all="ignore"):
            want = interpret(graph, *args)
        got = c.run(args, nthreads=3)
        _check_all(g, got, want, args, dt)


@pytest.mark.needs_cc
def test_int_and_bool_ops_wrap_like_numpy() -> None:
    b = Builder("ints")
    i64 = TensorType(DType.I64, ("N", 3))
    a, c = b.input(i64, "a"), b.input(i64, "c")
    m = b.input(TensorType(DType.BOOL, ("N", 3)), "m")
    outs = [b.op(op, [a]) for op in ("neg", "abs", "sign")]
    outs += [
        b.op(op, [a, c]) for op in ("add", "sub", "mul", "maximum", "minimum", "less", "equal")
    ]
    outs += [
        b.op("where", [m, a, c]),
        b.op("equal", [m, m]),
        b.op("not_equal", [m, b.op("less", [a, c])]),
    ]
    outs += [b.op("cast", [a], {"dtype": d}) for d in (DType.F32, DType.F64, DType.BOOL)]
    outs += [b.op("cast", [m], {"dtype": DType.I64}), b.op("sum", [a], {"axes": (0,)})]
    outs += [b.op("transpose", [a], {"perm": None}), b.op("sum_to", [a], {"shape": (3,)})]
    b.output(*outs)
    graph = b.build()
    comp = compile_graph(graph)
    big = np.iinfo(np.int64)
    av = np.array([[big.min, big.max, -7], [0, 5, big.max], [3, -1, big.min]], np.int64)
    cv = np.array([[-1, 1, 7], [big.min, -5, 2], [3, 2, big.max]], np.int64)
    mv = np.array([[True, False, True], [False, False, True], [True, True, False]])
    with np.errstate(all="ignore"):
        want = interpret(graph, av, cv, mv)
    got = comp.run([av, cv, mv])
    for k, (x, e) in enumerate(zip(got, want)):
        assert_same(x, e, f"output {k}")


@pytest.mark.needs_cc
def test_static_shapes_odd_sizes_and_empty_tensors() -> None:
    b = Builder("static")
    f = DType.F32
    a = b.input(TensorType(f, (37, 53)), "a")
    w = b.input(TensorType(f, (53, 29)), "w")
    v = b.input(TensorType(f, (53,)), "v")
    e = b.input(TensorType(f, (0, 3)), "e")
    r0 = b.input(TensorType(f, ()), "r0")
    b.output(
        b.op("matmul", [a, w]),
        b.op("matmul", [v, w]),  # a vector times a matrix: M = 1
        b.op("matmul", [b.op("reshape", [a], {"shape": (1, 37, 53)}), w]),
        b.op("relu", [e]),
        b.op("sum", [e], {"axes": (0,)}),
        b.op("mean", [e], {"axes": None}),
        b.op("hardswish", [r0]),
        b.op("sum", [r0], {"axes": None}),
        b.op("reshape", [r0], {"shape": (1, 1)}),
        b.op("mse_loss", [a, a], {"reduction": "sum"}),
    )
    graph = b.build()
    c = compile_graph(graph)
    assert c.program.batch_symbol is None
    rng = np.random.default_rng(6)
    args = [
        rng.standard_normal(s).astype(np.float32) for s in [(37, 53), (53, 29), (53,), (0, 3), ()]
    ]
    with np.errstate(all="ignore"):
        want = interpret(graph, *args)
    got = c.run(args, nthreads=2)
    for k, (x, e) in enumerate(zip(got, want)):
        np.testing.assert_allclose(x, e, rtol=1.3e-6, atol=1e-5, err_msg=f"output {k}")


@pytest.mark.needs_cc
def test_cross_entropy_bad_target_is_an_index_error() -> None:
    b = Builder("ce")
    logits = b.input(TensorType(DType.F32, ("N", 3)), "logits")
    t = b.input(TensorType(DType.I64, ("N",)), "t")
    loss = b.op("cross_entropy", [logits, t])
    b.output(loss, b.op("cross_entropy_grad", [logits, t, loss]))
    c = compile_graph(b.build())
    x = np.zeros((4, 3), np.float32)
    assert c.call([x, np.array([0, 1, 2, 2])])[0] == 0
    for bad in ([0, 3, 1, 1], [0, -1, 1, 1]):
        rc, _ = c.call([x, np.array(bad, np.int64)])
        assert rc == 5
        with pytest.raises(IndexError, match="out of range"):
            c.run([x, np.array(bad, np.int64)])


def test_every_op_has_a_lowering() -> None:
    """A new op in the table fails here until it has a C lowering (a composite: its expansion,
    whose ops have theirs); tests/ir/test_op_table.py compiles every op on its own sample, so
    a new op needs no line here."""
    region = {k for k, v in OPS.items() if v.region}
    lowered = {
        k
        for k, v in OPS.items()
        if v.lowering in LOWERINGS
        or v.lowering in INLINE
        or v.c is not None
        or v.expand is not None
    }
    assert set(OPS) - region - lowered == set()
