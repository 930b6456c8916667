"""The op table: type rules (and their messages), attr normal forms, references vs NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lucid.errors import IRTypeError
from lucid.ir import OPS, Builder, DType, TensorType, interpret
from tests.ir.graphs import f32

I64 = DType.I64


def _infer(op: str, *types: TensorType, **attrs: Any) -> tuple[TensorType, ...]:
    b = Builder()
    vals = [b.input(t) for t in types]
    return tuple(v.type for v in b.op_multi(op, vals, attrs))


def test_every_op_has_doc_and_a_reference_or_a_body() -> None:
    for name, opdef in OPS.items():
        assert opdef.name == name and opdef.doc
        assert (opdef.numpy is None) == opdef.region, name


def test_elementwise_flags() -> None:
    flagged = {n for n, d in OPS.items() if d.elementwise}
    assert {"add", "hardswish", "where", "relu_grad", "cast", "clip"} <= flagged
    assert not flagged & {"linear", "matmul", "sum", "reshape", "fused_gemm", "maximum_grad"}


@pytest.mark.parametrize(
    ("op", "types", "attrs", "expected"),
    [
        ("add", (f32("N", 5), f32(5)), {}, f32("N", 5)),
        ("less", (f32(3, 1), f32(4)), {}, TensorType(DType.BOOL, (3, 4))),
        ("where", (TensorType(DType.BOOL, ("N", 1)), f32(1, 3), f32()), {}, f32("N", 3)),
        ("matmul", (f32(2, "N", 4), f32(4, 7)), {}, f32(2, "N", 7)),
        ("matmul", (f32(4), f32(4, 7)), {}, f32(7)),
        ("linear", (f32("N", 3), f32(5, 3), f32(5)), {}, f32("N", 5)),
        ("linear", (f32(3), f32(5, 3)), {}, f32(5)),
        ("sum", (f32("N", 4, 5),), {"axes": (1,), "keepdims": True}, f32("N", 1, 5)),
        ("mean", (f32("N", 4),), {"axes": None}, f32()),
        ("reshape", (f32("N", 4, 5),), {"shape": (-1, 20)}, f32("N", 20)),
        ("reshape", (f32("N", 4, 5),), {"shape": (-1, 5)}, f32("N*4", 5)),
        ("reshape", (f32("N", 4, 5),), {"shape": (-1,)}, f32("N*20")),
        ("reshape", (f32("N*4", 5),), {"shape": (-1, 4, 5)}, f32("N", 4, 5)),
        ("reshape", (f32("N*4", 5),), {"shape": ("N", 4, 5)}, f32("N", 4, 5)),
        ("reshape", (f32("N*4", 5),), {"shape": (2, -1)}, f32(2, "N*10")),
        ("reshape", (f32(6, 4),), {"shape": (3, -1, 2)}, f32(3, 4, 2)),
        ("reshape", (f32(6, 4),), {"shape": (24,)}, f32(24)),
        ("transpose", (f32("N", 4, 5),), {"perm": (2, 0, 1)}, f32(5, "N", 4)),
        ("transpose", (f32("N", 4),), {}, f32(4, "N")),
        ("broadcast", (f32(1, 5),), {"shape": ("N", 3, 5)}, f32("N", 3, 5)),
        ("sum_to", (f32("N", 3, 5),), {"shape": (1, 5)}, f32(1, 5)),
        ("sum_to", (f32("N", 3, 5),), {"shape": ("N", 1, 5)}, f32("N", 1, 5)),
        ("cast", (f32(3),), {"dtype": "i64"}, TensorType(I64, (3,))),
        ("mse_loss", (f32("N", 2), f32("N", 2)), {}, f32()),
        ("cross_entropy", (f32("N", 4), TensorType(I64, ("N",))), {}, f32()),
        (
            "cross_entropy",
            (f32("N", 4), TensorType(I64, ("N",))),
            {"reduction": "none"},
            f32("N"),
        ),
        (
            "cross_entropy_grad",
            (f32("N", 4), TensorType(I64, ("N",)), f32("N")),
            {"reduction": "none"},
            f32("N", 4),
        ),
        ("constant", (), {"value": ((1, 2, 3), (4, 5, 6))}, f32(2, 3)),
        ("constant", (), {"value": 2, "dtype": I64}, TensorType(I64, ())),
        ("maximum_grad", (f32("N", 1), f32(3), f32("N", 3)), {}, f32("N", 3)),
    ],
)
def test_type_rules(
    op: str, types: tuple[TensorType, ...], attrs: dict[str, Any], expected: TensorType
) -> None:
    assert _infer(op, *types, **attrs)[0] == expected


@pytest.mark.parametrize(
    ("op", "types", "attrs", "message"),
    [
        (
            "linear",
            (f32("N", 3), f32(5, 4)),
            {},
            r"linear: expected w of shape \[out, 3\] matching x's last dim 3, got f32\[5,4\]",
        ),
        (
            "linear",
            (f32("N", 3), f32(5, 3), f32(4)),
            {},
            r"linear: expected b of shape \[5\] matching w's out dim, got f32\[4\]",
        ),
        (
            "add",
            (f32(3), TensorType(DType.F64, (3,))),
            {},
            r"add: inputs must have the same dtype \(insert a cast\), got a: f32\[3\], b: f64\[3\]",
        ),
        ("add", (f32("N", 3), f32(4, 3)), {}, r"add: shapes \[N,3\] and \[4,3\] do not broadcast"),
        (
            "div",
            (TensorType(I64, (2,)), TensorType(I64, (2,))),
            {},
            r"div: expected a float tensor for a, got i64\[2\]",
        ),
        ("hardswish", (TensorType(I64, (2,)),), {}, r"hardswish: expected a float tensor for x"),
        ("neg", (TensorType(DType.BOOL, (2,)),), {}, r"neg: expected a numeric tensor for x"),
        ("matmul", (f32(2, 3), f32(4, 5)), {}, r"matmul: expected b of shape \[3, n\]"),
        (
            "matmul",
            (f32(2, 3), f32(2, 3, 5)),
            {},
            r"matmul: expected a \[..., m, k\] \(or \[k\]\) and b \[k, n\]",
        ),
        ("where", (f32(3), f32(3), f32(3)), {}, r"where: expected a bool condition, got f32\[3\]"),
        (
            "sum",
            (f32(3, 4),),
            {"axes": (2,)},
            r"sum: axes must be sorted, distinct and in \[0, 2\)",
        ),
        (
            "reshape",
            (f32(6, 4),),
            {"shape": (5, -1)},
            r"reshape: cannot reshape f32\[6,4\] \(24 elements\)",
        ),
        ("reshape", (f32(6, 4),), {"shape": (-1, -1)}, r"reshape: shape may hold one -1"),
        (
            "reshape",
            (f32("N", 4, 5),),
            {"shape": (-1, 3)},
            (
                r"reshape: cannot reshape f32\[N,4,5\] \(N\*20 elements\) to \[-1,3\]: the "
                r"-1 would be N\*20 / 3, not a whole dim"
            ),
        ),
        (
            "reshape",
            (f32("N", 4),),
            {"shape": (8, 4)},
            r"cannot reshape f32\[N,4\] \(N\*4 elements\) to \[8,4\] \(32 elements\)",
        ),
        (
            "reshape",
            (f32("N", "M"),),
            {"shape": (-1,)},
            r"cannot reshape f32\[N,M\] \(M\*N elements\) to \[-1\]: the symbols",
        ),
        (
            "transpose",
            (f32(2, 3),),
            {"perm": (0, 0)},
            r"transpose: perm must be a permutation of 0..1",
        ),
        (
            "broadcast",
            (f32(2, 5),),
            {"shape": ("N", 5)},
            r"broadcast: cannot broadcast f32\[2,5\] to \[N,5\]",
        ),
        (
            "broadcast",
            (f32(1, 5),),
            {"shape": (5,)},
            r"broadcast: cannot broadcast f32\[1,5\] to \[5\]",
        ),
        (
            "sum_to",
            (f32(3, 5),),
            {"shape": (2, 5)},
            r"sum_to: f32\[3,5\] is not a broadcast of the shape \[2,5\]",
        ),
        (
            "mse_loss",
            (f32(3), f32(3)),
            {"reduction": "max"},
            r"mse_loss: reduction must be \"mean\" or \"sum\", got 'max'",
        ),
        (
            "cross_entropy",
            (f32("N", 4), f32("N")),
            {},
            r"cross_entropy: expected target i64\[N\] \(one class per row\), got f32\[N\]",
        ),
        ("cross_entropy", (f32(4),), {}, r"cross_entropy: expected 2 inputs, got 1"),
        (
            "relu_grad",
            (f32(3), f32(4)),
            {},
            r"relu_grad: expected the cotangent g to have x's type f32\[3\], got f32\[4\]",
        ),
        (
            "cross_entropy_grad",
            (f32(2, 4), TensorType(I64, (2,)), f32(2)),
            {},
            r"expected g f32\[\], got f32\[2\]",
        ),
        ("constant", (), {"value": ((1, 2), (3,))}, r"constant: value (is ragged|does not fit)"),
        (
            "maximum_grad",
            (f32(3), f32(3), f32(4)),
            {},
            r"maximum_grad: expected g of the broadcast shape f32\[3\]",
        ),
        (
            "softmax",
            (f32("N", 4),),
            {"dim": 2},
            r"softmax: dim must lie in \[0, 2\) for f32\[N,4\], got 2",
        ),
        ("log_softmax", (f32(3),), {"dim": -2}, r"log_softmax: dim must lie in \[0, 1\)"),
        ("softmax", (f32(3),), {}, r"softmax: missing attribute 'dim'"),
        (
            "gelu",
            (f32(3),),
            {"approximate": "fast"},
            r"gelu: approximate must be \"none\" or \"tanh\", got 'fast'",
        ),
        ("leaky_relu", (TensorType(I64, (3,)),), {}, r"leaky_relu: expected a float tensor"),
    ],
)
def test_type_rule_errors(
    op: str, types: tuple[TensorType, ...], attrs: dict[str, Any], message: str
) -> None:
    with pytest.raises(IRTypeError, match=message):
        _infer(op, *types, **attrs)


def test_type_errors_are_type_errors() -> None:
    with pytest.raises(TypeError):
        _infer("add", f32(2), f32(3))


def test_constant_values_are_rounded_to_their_dtype() -> None:
    b = Builder()
    b.constant([0.1, 1e40])
    assert b.nodes[-1].attrs["value"] == (float(np.float32(0.1)), float("inf"))
    b.constant([1, 0], DType.BOOL)
    assert b.nodes[-1].attrs["value"] == (True, False)


# ---------------------------------------------------------------- references vs NumPy

RNG = np.random.default_rng(1234)
X = RNG.standard_normal((4, 5)).astype(np.float32) * 4
X[0, :4] = [np.nan, -np.inf, np.inf, -0.0]
Y = RNG.standard_normal((4, 5)).astype(np.float32)


# Independent spellings of each op's semantics (textbook forms, not the op table's kernels), so
# these tests compare two implementations; float64 math, compared after rounding to float32.
def _hsig(x: np.ndarray) -> np.ndarray:
    return np.clip(x.astype(np.float64) / 6 + 0.5, 0, 1)


def _ref(fn: Any) -> Any:
    return lambda x: fn(x.astype(np.float64)).astype(np.float32)


REFERENCE = {
    "hardswish": _ref(lambda x: x * _hsig(x)),
    "hardsigmoid": _ref(_hsig),
    "relu": _ref(lambda x: np.where(x < 0, 0.0, x)),  # NaN passes through
    "relu6": _ref(lambda x: np.where(x < 0, 0.0, np.where(x > 6, 6.0, x))),
    "sigmoid": _ref(lambda x: 1 / (1 + np.exp(-x))),
}


def _run(op: str, arrays: list[np.ndarray], **attrs: Any) -> tuple[np.ndarray, ...]:
    b = Builder()
    vals = [b.input(TensorType(DType.from_numpy(a.dtype), a.shape)) for a in arrays]
    b.output(*b.op_multi(op, vals, attrs))
    return interpret(b.build(), *arrays)


@pytest.mark.parametrize(
    ("op", "fn"),
    [
        ("hardswish", REFERENCE["hardswish"]),
        ("hardsigmoid", REFERENCE["hardsigmoid"]),
        ("relu", REFERENCE["relu"]),
        ("relu6", REFERENCE["relu6"]),
        ("sigmoid", REFERENCE["sigmoid"]),
        ("tanh", np.tanh),
        ("exp", np.exp),
        ("abs", np.abs),
        ("sign", np.sign),
        ("neg", np.negative),
    ],
)
def test_unary_references_match_textbook_formulas(op: str, fn: Any) -> None:
    with np.errstate(all="ignore"):
        (got,) = _run(op, [X])
        want = fn(X)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-7, atol=1e-37, equal_nan=True)
    finite = np.isfinite(want) & (want != 0)
    assert np.array_equal(np.signbit(got[finite]), np.signbit(want[finite]))


def test_binary_and_grad_references_match_kernels() -> None:
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(_run("maximum", [X, Y])[0], np.maximum(X, Y))
        np.testing.assert_array_equal(_run("div", [X, Y[:1]])[0], X / Y[:1])
        slope = np.where(X < -3, 0, np.where(X > 3, 1, X.astype(np.float64) / 3 + 0.5))
        np.testing.assert_allclose(
            _run("hardswish_grad", [X, Y])[0], (Y * slope).astype(np.float32), rtol=2e-7
        )
        np.testing.assert_array_equal(
            _run("relu6_grad", [X, Y])[0], np.where((X > 0) & (X < 6), Y, 0).astype(np.float32)
        )
        np.testing.assert_array_equal(
            _run("clip_grad", [X, Y], min=-1.0, max=2.0)[0],
            np.where((X >= -1) & (X <= 2), Y, 0).astype(np.float32),
        )
        np.testing.assert_array_equal(
            _run("clip", [X], min=None, max=2.5)[0], np.where(X > 2.5, np.float32(2.5), X)
        )
        ga, gb = _run("minimum_grad", [X, Y, Y])
    # minimum's cotangents are (d/da, d/db): the smaller side gets g, a tie splits it
    tie = np.where(X == Y, Y / 2, 0)
    np.testing.assert_array_equal(ga, np.where(X < Y, Y, tie).astype(np.float32))
    np.testing.assert_array_equal(gb, np.where(Y < X, Y, tie).astype(np.float32))
    a, b, g = (np.array(v, np.float32) for v in ([1, 2, 3], [3, 2, 1], [10, 10, 10]))
    ga, gb = _run("minimum_grad", [a, b, g])
    assert ga.tolist() == [10, 5, 0] and gb.tolist() == [0, 5, 10]
    (p,) = _run("pow", [np.abs(Y)], exponent=0.5)
    np.testing.assert_array_equal(p, np.abs(Y) ** np.float32(0.5))
    assert p.dtype == np.float32


def test_structured_references_match_numpy() -> None:
    w, bias = Y[:3], Y[0, :3]
    np.testing.assert_array_equal(_run("linear", [Y, w, bias])[0], Y @ w.T + bias)
    np.testing.assert_array_equal(_run("matmul", [Y, w.T.copy()])[0], Y @ w.T)
    (s,) = _run("sum", [Y], axes=(0,), keepdims=True)
    np.testing.assert_array_equal(s, Y.sum(axis=0, keepdims=True))
    (m,) = _run("mean", [Y], axes=None)
    assert m.shape == () and m.dtype == np.float32 and m == Y.mean()
    (r,) = _run("reshape", [Y], shape=(-1, 2, 5))
    assert r.shape == (2, 2, 5)
    np.testing.assert_array_equal(_run("transpose", [Y])[0], Y.T)
    np.testing.assert_array_equal(_run("sum_to", [Y], shape=(1, 5))[0], Y.sum(0, keepdims=True))
    (c,) = _run("cast", [Y], dtype=DType.F64)
    assert c.dtype == np.float64
    target = np.array([0, 4, 2, 1], dtype=np.int64)
    (ce,) = _run("cross_entropy", [Y, target], reduction="sum")
    y64 = Y.astype(np.float64)
    logp = y64 - y64.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    assert ce.dtype == np.float32
    np.testing.assert_allclose(ce, -logp[np.arange(4), target].sum(), rtol=1e-6)
    g = np.array(0.5, dtype=np.float32)
    onehot = np.eye(Y.shape[1])[target]
    np.testing.assert_allclose(
        _run("cross_entropy_grad", [Y, target, g])[0],
        (np.exp(logp) - onehot) * 0.5 / 4,
        rtol=1e-5,
        atol=1e-7,
    )
    (mse,) = _run("mse_loss", [Y, Y * 2])
    assert mse.shape == () and mse.dtype == np.float32
    np.testing.assert_allclose(mse, np.mean((y64 - 2 * y64) ** 2), rtol=1e-6)
    (lt,) = _run("less", [X, Y])
    assert lt.dtype == np.bool_ and np.array_equal(lt, X < Y)
    (wh,) = _run("where", [lt, X, Y])
    np.testing.assert_array_equal(wh, np.where(lt, X, Y))


def test_symbolic_shape_attrs_are_bound_by_the_interpreter() -> None:
    b = Builder()
    x = b.input(f32("N", 4, 5))
    row = b.input(f32(1, 5))
    flat = b.op("reshape", [x], {"shape": (-1, 20)})
    wide = b.op("broadcast", [row], {"shape": ("N", 5)})
    back = b.op(
        "sum_to", [b.op("broadcast", [row], {"shape": ("N", 4, 5)})], {"shape": ("N", 1, 5)}
    )
    b.output(flat, wide, back)
    xs = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    r = RNG.standard_normal((1, 5)).astype(np.float32)
    got_flat, got_wide, got_back = interpret(b.build(), xs, r)
    np.testing.assert_array_equal(got_flat, xs.reshape(3, 20))
    np.testing.assert_array_equal(got_wide, np.broadcast_to(r, (3, 5)))
    np.testing.assert_array_equal(got_back, np.broadcast_to(r, (3, 4, 5)).sum(1, keepdims=True))


def test_dims_reads_a_shape_attr_and_names_a_bad_one() -> None:
    from lucid.ir.ops.base import dims

    assert dims({"shape": (2, "N", -1)}, "shape") == (2, "N", -1)
    assert dims({"shape": ()}, "shape") == ()
    with pytest.raises(IRTypeError, match=r"attribute 'shape' must be a tuple of dims, got 3"):
        dims({"shape": 3}, "shape")
    with pytest.raises(IRTypeError, match=r"must be a tuple of dims, got \(2, 1\.5\)"):
        dims({"shape": (2, 1.5)}, "shape")


def test_number_reads_a_number_attr_and_names_a_bad_one() -> None:
    from lucid.ir.ops.base import number

    assert number({"p": 0.25}, "p") == 0.25
    assert number({"p": 2}, "p") == 2.0 and isinstance(number({"p": 2}, "p"), float)
    with pytest.raises(IRTypeError, match=r"attribute 'p' must be a number, got None"):
        number({"p": None}, "p")


class _Rank(int):
    """An int subclass: a number to the attr checks, though not exactly an int."""


@pytest.mark.parametrize(
    "value, numbers",
    [
        (3, True),
        (((1, 2.5), (True, 4)), True),
        ((), True),
        (((),), True),
        ((1, (2, 3)), True),  # mixed depth: numbers at every leaf (the shape check refuses it)
        ((_Rank(1), _Rank(2)), True),
        (((1, "2"),), False),
        ((1, None), False),
        ("3", False),
    ],
)
def test_numbers_attr_accepts_nests_of_numbers_only(value: Any, numbers: bool) -> None:
    from lucid.ir.ops.base import NUMBERS

    assert NUMBERS.check(value) is numbers


@pytest.mark.parametrize(
    "value, shape",
    [
        (2.0, ()),
        ((), (0,)),
        (((1, 2, 3), (4, 5, 6)), (2, 3)),
        (tuple((i, i + 1) for i in range(4096)), (4096, 2)),
        (((), ()), (2, 0)),
    ],
)
def test_constant_shape_of_nests(value: Any, shape: tuple[int, ...]) -> None:
    from lucid.ir.ops.graph import _const_shape

    assert _const_shape(value) == shape


@pytest.mark.parametrize(
    "value, message",
    [
        (((1, 2), (3,)), "ragged"),
        (((1, 2), 3), "mixes numbers and lists"),
        ((1, (2, 3)), "mixes numbers and lists"),
    ],
)
def test_constant_shape_refuses_ragged_and_mixed_nests(value: Any, message: str) -> None:
    from lucid.ir.ops.graph import _const_shape

    with pytest.raises(IRTypeError, match=message):
        _const_shape(value)


@pytest.mark.parametrize(
    "cin, cout, k, stride, padding, dilation, groups, hw, dtype",
    [
        (3, 4, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, (7, 9), np.float32),
        (6, 6, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 6, (9, 9), np.float32),  # depthwise
        (4, 6, (3, 2), (2, 1), (1, 0, 2, 1), (1, 2), 2, (9, 8), np.float64),
        (2, 3, (1, 4), (1, 3), (0, 0, 2, 2), (1, 1), 1, (1, 13), np.float64),
    ],
)
def test_conv2d_kernel_on_an_empty_batch_gives_the_full_batchs_shape(
    cin: int,
    cout: int,
    k: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
    hw: tuple[int, int],
    dtype: type[np.floating[Any]],
) -> None:
    """The tracer runs lucid's models on an empty batch; the kernel then only works out the
    shape, which must be the full batch's with no rows (and its dtype)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, cin, *hw)).astype(dtype)
    w = rng.standard_normal((cout, cin // groups, *k)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    kernel = OPS["conv2d"].numpy
    assert kernel is not None
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    full = kernel(x, w, b, **attrs)
    empty = kernel(x[:0], w, b, **attrs)
    assert (empty.shape, empty.dtype) == ((0, *full.shape[1:]), full.dtype)
    types = (TensorType(DType.from_numpy(a.dtype), a.shape) for a in (x, w, b))
    assert _infer("conv2d", *types, **attrs) == (TensorType(DType.from_numpy(dtype), full.shape),)
