"""Ops with structure beyond one element: GEMMs, reductions, shape ops, losses, constants, fused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lucid import _np_kernels as K
from lucid.errors import IRTypeError
from lucid.ir import _vjp as V
from lucid.ir.core import Attr, Builder, Node, Value
from lucid.ir.ops import (
    BOOL,
    DIMS,
    DTYPE,
    INTS,
    NUMBERS,
    REQUIRED,
    STR,
    Array,
    OpDef,
    arr,
    broadcast_types,
    defvjp,
    expect_float,
    expect_numeric,
    expect_same_dtype,
    register,
    scalar,
)
from lucid.ir.types import Dim, DType, TensorType, broadcast_shapes, format_shape

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def _ints(attrs: Attrs, key: str) -> tuple[int, ...]:
    v = attrs[key]
    assert isinstance(v, tuple)
    return tuple(int(d) for d in v)  # type: ignore[arg-type]


def _dims(attrs: Attrs, key: str) -> tuple[Dim, ...]:
    v = attrs[key]
    assert isinstance(v, tuple)
    return v  # type: ignore[return-value]


# ---------------------------------------------------------------- GEMMs


def _matmul_infer(ts: Types, attrs: Attrs) -> Types:
    a, b = ts
    expect_same_dtype("matmul", ts, ("a", "b"))
    expect_float("matmul", a, "a")
    # the eager contract: a [..., m, k] or [k], b [k, n]; no batched b (use linear or reshape)
    if a.rank < 1 or b.rank != 2:
        raise IRTypeError(f"matmul: expected a [..., m, k] (or [k]) and b [k, n], got {a} @ {b}")
    if a.shape[-1] != b.shape[0]:
        raise IRTypeError(
            f"matmul: expected b of shape [{a.shape[-1]}, n] matching a's last dim "
            f"{a.shape[-1]}, got {b}"
        )
    return (TensorType(a.dtype, (*a.shape[:-1], b.shape[1])),)


register(
    OpDef(
        "matmul",
        2,
        {},
        _matmul_infer,
        lambda xs, attrs: (arr(np.matmul(xs[0], xs[1])),),
        doc="a [..., m, k] @ b [k, n] -> [..., m, n] (a [k] gives [n])",
    )
)


def _transposed(b: Builder, v: Value) -> Value:
    return b.op("transpose", [v], {"perm": (1, 0)})


@defvjp("matmul")
def _matmul_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    (lhs, rhs), g = xs, gs[0]
    assert g is not None
    ga = b.op("matmul", [g, _transposed(b, rhs)]) if needs[0] else None
    gb = None
    if needs[1]:
        # rows(a)^T @ rows(g): one GEMM over every leading axis, transpose folded into packing
        a2 = V.rows(b, lhs) if lhs.type.rank != 1 else V.reshape_to(b, lhs, (lhs.type.shape[0], 1))
        gb = b.op("matmul", [_transposed(b, a2) if lhs.type.rank != 1 else a2, V.rows(b, g)])
    return ga, gb


def _linear_infer(ts: Types, attrs: Attrs) -> Types:
    x, w = ts[0], ts[1]
    expect_same_dtype("linear", ts, ("x", "w", "b")[: len(ts)])
    expect_float("linear", x, "x")
    if x.rank < 1:
        raise IRTypeError(f"linear: expected x of shape [..., in], got the scalar {x}")
    if w.rank != 2 or w.shape[1] != x.shape[-1]:
        raise IRTypeError(
            f"linear: expected w of shape [out, {x.shape[-1]}] matching x's last dim "
            f"{x.shape[-1]}, got {w}"
        )
    if len(ts) == 3 and ts[2].shape != (w.shape[0],):
        raise IRTypeError(
            f"linear: expected b of shape [{w.shape[0]}] matching w's out dim, got {ts[2]}"
        )
    return (TensorType(x.dtype, (*x.shape[:-1], w.shape[0])),)


def _linear_reference(xs: Sequence[Array], attrs: Attrs) -> tuple[Array, ...]:
    y = np.matmul(xs[0], xs[1].T)
    return (arr(y + xs[2] if len(xs) == 3 else y),)


register(
    OpDef(
        "linear",
        (2, 3),
        {},
        _linear_infer,
        _linear_reference,
        doc="x [..., in] @ w[out, in].T (+ b [out]) -> [..., out]",
    )
)


@defvjp("linear")
def _linear_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    # dw = g2^T @ x2 is kept a matmul of a transpose so GEMM packing can fold the transpose;
    # db sums g over every leading axis (the bias-grad column sum fusion folds into the GEMM).
    x, w, g = xs[0], xs[1], gs[0]
    assert g is not None
    gw = b.op("matmul", [_transposed(b, V.rows(b, g)), V.rows(b, x)]) if needs[1] else None
    gbias = None
    if len(xs) == 3 and needs[2]:
        lead = tuple(range(g.type.rank - 1))
        gbias = b.op("sum", [g], {"axes": lead}) if lead else g
    gx = b.op("matmul", [g, w]) if needs[0] else None
    return (gx, gw, gbias)[: len(xs)]


# ---------------------------------------------------------------- reductions


def _axes_prepare(attrs: dict[str, Attr], ts: Types) -> dict[str, Attr]:
    """axes None -> all; an int -> (int,); negatives counted from the end; sorted, unique."""
    out = dict(attrs)
    rank = ts[0].rank
    axes = attrs.get("axes", None)
    if axes is None:
        out["axes"] = tuple(range(rank))
    elif isinstance(axes, (int, tuple, list)) and not isinstance(axes, bool):
        listed = (axes,) if isinstance(axes, int) else tuple(axes)
        if all(isinstance(a, int) and -rank <= a < rank for a in listed):
            out["axes"] = tuple(sorted({a % rank for a in listed}))  # type: ignore[operator]
    return out


def _reduce_infer(name: str, float_only: bool):  # type: ignore[no-untyped-def]
    def infer(ts: Types, attrs: Attrs) -> Types:
        (x,) = ts
        (expect_float if float_only else expect_numeric)(name, x, "x")
        axes = _ints(attrs, "axes")
        if list(axes) != sorted(set(axes)) or any(not 0 <= a < x.rank for a in axes):
            raise IRTypeError(
                f"{name}: axes must be sorted, distinct and in [0, {x.rank}) for {x}, got {axes}"
            )
        keep = attrs["keepdims"]
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        return (TensorType(x.dtype, shape),)

    return infer


def _reduce_reference(fn_name: str):  # type: ignore[no-untyped-def]
    def reference(xs: Sequence[Array], attrs: Attrs) -> tuple[Array, ...]:
        x = xs[0]
        fn = getattr(x, fn_name)
        return (arr(fn(axis=_ints(attrs, "axes"), keepdims=bool(attrs["keepdims"])), x.dtype),)

    return reference


for _name, _float_only in (("sum", False), ("mean", True)):
    register(
        OpDef(
            _name,
            1,
            {"axes": (INTS, REQUIRED), "keepdims": (BOOL, False)},
            _reduce_infer(_name, _float_only),
            _reduce_reference(_name),
            doc=f"{_name} over `axes` (non-negative, sorted; all axes for None)",
            prepare=_axes_prepare,
        )
    )


@defvjp("sum")
def _sum_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    g = gs[0]
    assert g is not None
    return (V.unreduce(b, g, xs[0].type, _ints(node.attrs, "axes"), bool(node.attrs["keepdims"])),)


@defvjp("mean")
def _mean_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    (x,), g, axes = xs, gs[0], _ints(node.attrs, "axes")
    assert g is not None
    if axes:  # eager divides the cotangent by the count first, then broadcasts it
        g = b.op("div", [g, V.count(b, [x.type.shape[a] for a in axes], g)])
    return (V.unreduce(b, g, x.type, axes, bool(node.attrs["keepdims"])),)


def _sum_to_infer(ts: Types, attrs: Attrs) -> Types:
    (g,) = ts
    shape = _dims(attrs, "shape")
    try:
        fits = broadcast_shapes(shape, g.shape) == g.shape
    except IRTypeError:
        fits = False
    if not fits or len(shape) > g.rank:
        raise IRTypeError(f"sum_to: {g} is not a broadcast of the shape {format_shape(shape)}")
    return (TensorType(g.dtype, shape),)


register(
    OpDef(
        "sum_to",
        1,
        {"shape": (DIMS, REQUIRED)},
        _sum_to_infer,
        lambda xs, attrs: (arr(K.unbroadcast(xs[0], _ints(attrs, "shape"))),),
        doc="sum a broadcast cotangent back to `shape` (symbols bound by the interpreter)",
    )
)


@defvjp("sum_to")
def _sum_to_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    return (b.op("broadcast", [gs[0]], {"shape": xs[0].type.shape}),)  # type: ignore[list-item]


# ---------------------------------------------------------------- shape ops


def _reshape_infer(ts: Types, attrs: Attrs) -> Types:
    (x,) = ts
    target = _ints(attrs, "shape")
    if target.count(-1) > 1 or any(d < -1 for d in target):
        raise IRTypeError(f"reshape: shape may hold one -1 and dims >= 0, got {target}")
    known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
    static = int(np.prod([d for d in x.shape if isinstance(d, int)], dtype=np.int64))
    symbols = [d for d in x.shape if isinstance(d, str)]
    fill: Dim
    if not symbols:
        if -1 not in target:
            if known != static:
                raise IRTypeError(f"reshape: cannot reshape {x} ({static} elements) to {target}")
            return (TensorType(x.dtype, target),)
        if known == 0 or static % known:
            raise IRTypeError(f"reshape: cannot reshape {x} ({static} elements) to {target}")
        fill = static // known
    else:
        if -1 not in target or len(symbols) != 1 or known != static:
            raise IRTypeError(
                f"reshape: a symbolic shape reshapes only with one -1 standing for exactly its "
                f"one symbolic dim (e.g. f32[N,4,5] -> (-1, 20)); cannot reshape {x} to {target}"
            )
        fill = symbols[0]
    return (TensorType(x.dtype, tuple(fill if d == -1 else d for d in target)),)


register(
    OpDef(
        "reshape",
        1,
        {"shape": (INTS, REQUIRED)},
        _reshape_infer,
        lambda xs, attrs: (arr(xs[0].reshape(_ints(attrs, "shape"))),),
        doc="reshape to `shape` (ints; at most one -1, which may stand for a symbolic dim)",
    )
)


@defvjp("reshape")
def _reshape_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    return (V.reshape_to(b, gs[0], xs[0].type.shape),)  # type: ignore[arg-type]


def _perm_prepare(attrs: dict[str, Attr], ts: Types) -> dict[str, Attr]:
    out = dict(attrs)
    if attrs.get("perm", None) is None:
        out["perm"] = tuple(reversed(range(ts[0].rank)))
    return out


def _transpose_infer(ts: Types, attrs: Attrs) -> Types:
    (x,) = ts
    perm = _ints(attrs, "perm")
    if sorted(perm) != list(range(x.rank)):
        raise IRTypeError(f"transpose: perm must be a permutation of 0..{x.rank - 1}, got {perm}")
    return (TensorType(x.dtype, tuple(x.shape[p] for p in perm)),)


register(
    OpDef(
        "transpose",
        1,
        {"perm": (INTS, REQUIRED)},
        _transpose_infer,
        lambda xs, attrs: (arr(np.transpose(xs[0], _ints(attrs, "perm"))),),
        doc="permute dims (perm None -> reversed, like .T)",
        prepare=_perm_prepare,
    )
)


@defvjp("transpose")
def _transpose_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    perm = _ints(node.attrs, "perm")
    inverse = tuple(sorted(range(len(perm)), key=perm.__getitem__))
    return (b.op("transpose", [gs[0]], {"perm": inverse}),)  # type: ignore[list-item]


def _broadcast_infer(ts: Types, attrs: Attrs) -> Types:
    (x,) = ts
    shape = _dims(attrs, "shape")
    try:
        fits = broadcast_shapes(x.shape, shape) == shape
    except IRTypeError:
        fits = False
    if not fits:
        raise IRTypeError(f"broadcast: cannot broadcast {x} to {format_shape(shape)}")
    return (TensorType(x.dtype, shape),)


register(
    OpDef(
        "broadcast",
        1,
        {"shape": (DIMS, REQUIRED)},
        _broadcast_infer,
        lambda xs, attrs: (np.broadcast_to(xs[0], _ints(attrs, "shape")).copy(),),
        doc="broadcast_to(shape); shape may name symbols (bound by the interpreter)",
    )
)


@defvjp("broadcast")
def _broadcast_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    return (V.sum_to(b, gs[0], xs[0].type),)  # type: ignore[arg-type]


register(
    OpDef(
        "cast",
        1,
        {"dtype": (DTYPE, REQUIRED)},
        lambda ts, attrs: (ts[0].with_dtype(attrs["dtype"]),),  # type: ignore[arg-type]
        lambda xs, attrs: (xs[0].astype(attrs["dtype"].np),),  # type: ignore[union-attr]
        elementwise=True,
        doc="x.astype(dtype)",
    )
)


@defvjp("cast")
def _cast_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    # autodiff only asks when x is a float (a cast from int or bool starts a constant)
    return (b.op("cast", [gs[0]], {"dtype": xs[0].type.dtype}),)  # type: ignore[list-item]


# ---------------------------------------------------------------- losses


def _reduction(name: str, attrs: Attrs) -> str:
    r = attrs["reduction"]
    if r not in ("mean", "sum"):
        raise IRTypeError(f'{name}: reduction must be "mean" or "sum", got {r!r}')
    return str(r)


def _mse_infer(ts: Types, attrs: Attrs) -> Types:
    _reduction("mse_loss", attrs)
    expect_same_dtype("mse_loss", ts, ("pred", "target"))
    expect_float("mse_loss", ts[0], "pred")
    broadcast_types("mse_loss", ts)
    return (scalar(ts[0].dtype),)


register(
    OpDef(
        "mse_loss",
        2,
        {"reduction": (STR, "mean")},
        _mse_infer,
        lambda xs, attrs: (arr(K.mse_loss(xs[0], xs[1], str(attrs["reduction"]))),),
        doc="mean (or sum) of (pred - target)^2 -> scalar",
    )
)


@defvjp("mse_loss")
def _mse_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    (p, t), g = xs, gs[0]
    assert g is not None
    scale = b.op("mul", [g, V.const(b, 2.0, g)])  # eager: (p - t) * (g * 2 / size)
    d = b.op("sub", [p, t])
    if node.attrs["reduction"] == "mean":
        scale = b.op("div", [scale, V.count(b, d.type.shape, g)])
    gp = b.op("mul", [d, scale])
    gt = V.sum_to(b, b.op("neg", [gp]), t.type) if needs[1] else None
    return V.sum_to(b, gp, p.type), gt


def _check_ce(name: str, logits: TensorType, target: TensorType, attrs: Attrs) -> None:
    _reduction(name, attrs)
    expect_float(name, logits, "logits")
    if logits.rank != 2:
        raise IRTypeError(f"{name}: expected logits of shape [N, C], got {logits}")
    if target.dtype is not DType.I64 or target.shape != logits.shape[:1]:
        raise IRTypeError(
            f"{name}: expected target i64[{logits.shape[0]}] (one class per row), got {target}"
        )


def _ce_infer(ts: Types, attrs: Attrs) -> Types:
    _check_ce("cross_entropy", ts[0], ts[1], attrs)
    return (scalar(ts[0].dtype),)


def _ce_grad_infer(ts: Types, attrs: Attrs) -> Types:
    logits, target, g = ts
    _check_ce("cross_entropy_grad", logits, target, attrs)
    if g != scalar(logits.dtype):
        raise IRTypeError(f"cross_entropy_grad: expected g {scalar(logits.dtype)}, got {g}")
    return (logits,)


register(
    OpDef(
        "cross_entropy",
        2,
        {"reduction": (STR, "mean")},
        _ce_infer,
        lambda xs, attrs: (arr(K.cross_entropy(xs[0], xs[1], str(attrs["reduction"]))),),
        doc="logits [N, C], target i64 [N] -> mean (or sum) of -log_softmax[row, target]",
    )
)


@defvjp("cross_entropy")
def _ce_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    # recomputes softmax from the saved logits; the i64 target has no gradient
    return (b.op("cross_entropy_grad", [xs[0], xs[1], gs[0]], dict(node.attrs)), None)  # type: ignore[list-item]


register(
    OpDef(
        "cross_entropy_grad",
        3,
        {"reduction": (STR, "mean")},
        _ce_grad_infer,
        lambda xs, attrs: (
            arr(K.cross_entropy_grad(xs[0], xs[1], xs[2], str(attrs["reduction"]))),
        ),
        doc="(softmax(logits) - onehot(target)) * g (/ N for mean)",
    )
)


# ---------------------------------------------------------------- constants


def _const_shape(value: Attr) -> tuple[int, ...]:
    """The shape of a nest of tuples; IRTypeError if it is ragged (iterative walk)."""
    shape: list[int] = []
    level: list[Attr] = [value]
    while level and all(isinstance(v, tuple) for v in level):
        lengths = {len(v) for v in level}  # type: ignore[arg-type]
        if len(lengths) != 1:
            raise IRTypeError("constant: value is ragged (rows of different lengths)")
        shape.append(lengths.pop())
        level = [x for v in level for x in v]  # type: ignore[union-attr]
    if any(isinstance(v, tuple) for v in level):
        raise IRTypeError("constant: value mixes numbers and lists at one depth")
    return tuple(shape)


def _const_prepare(attrs: dict[str, Attr], ts: Types) -> dict[str, Attr]:
    """Round the values to the dtype, so the attr prints exactly what the tensor holds."""
    out = dict(attrs)
    dtype = attrs.get("dtype", DType.F32)
    if isinstance(dtype, str):
        dtype = DType.parse(dtype)
    value = attrs.get("value")
    if isinstance(dtype, DType) and value is not None:
        try:
            with np.errstate(over="ignore"):  # a float beyond f32's range rounds to inf, as in C
                out["value"] = np.asarray(value, dtype=dtype.np).tolist()
        except (TypeError, ValueError) as e:
            raise IRTypeError(f"constant: value does not fit {dtype}: {e}") from None
    return out


def _const_infer(ts: Types, attrs: Attrs) -> Types:
    dtype = attrs["dtype"]
    assert isinstance(dtype, DType)
    return (TensorType(dtype, _const_shape(attrs["value"])),)


register(
    OpDef(
        "constant",
        0,
        {"value": (NUMBERS, REQUIRED), "dtype": (DTYPE, DType.F32)},
        _const_infer,
        lambda xs, attrs: (np.array(attrs["value"], dtype=attrs["dtype"].np),),  # type: ignore[union-attr]
        doc="a literal tensor: a number (scalar) or nested tuples, in `dtype`",
        prepare=_const_prepare,
    )
)


# ---------------------------------------------------------------- fused ops (issue 5)


def _from_body(ts: Types, attrs: Attrs) -> Types:
    raise IRTypeError("fused ops take their result types from their body graph")


for _name, _doc in (
    ("fused_elementwise", "a chain of elementwise ops run as one loop"),
    ("fused_gemm", "a matmul/linear then an elementwise epilogue (and maybe a column sum)"),
    ("fused_mlp", "several linear layers with their activations in one kernel"),
):
    register(OpDef(_name, (1, None), {}, _from_body, None, doc=_doc, region=True))
