"""Small IR builders shared by the VJP rules in the op table (see lucid/ir/autodiff.py).

Each helper emits ordinary IR ops through the Builder a rule is given, so a backward graph is
made of the same ops as any other graph. Shapes may hold one symbolic dim (the batch `N`):
reshapes then spell it as -1, which is what the `reshape` type rule accepts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from lucid.errors import AutodiffError
from lucid.ir.core import Builder, Node, Value
from lucid.ir.types import Dim, TensorType, is_symbol


def const(b: Builder, value: float, like: Value) -> Value:
    """A scalar constant in `like`'s dtype (lucid never promotes, so constants must match)."""
    return b.constant(value, like.type.dtype)


def zeros(b: Builder, t: TensorType) -> Value:
    """Zeros of type `t`: a broadcast scalar, which fusion and codegen turn into a fill."""
    zero = b.constant(0, t.dtype)
    return zero if t.shape == () else b.op("broadcast", [zero], {"shape": t.shape})


def sum_to(b: Builder, g: Value, t: TensorType) -> Value:
    """`g` summed back to `t`'s shape when broadcasting stretched it; `g` itself otherwise."""
    if g.type.shape == t.shape:
        return g
    return b.op("sum_to", [g], {"shape": t.shape})


def reshape_to(b: Builder, g: Value, shape: Sequence[Dim]) -> Value:
    """`g` reshaped to `shape`, writing its one symbolic dim (if any) as -1."""
    shape = tuple(shape)
    if g.type.shape == shape:
        return g
    symbols = [d for d in shape if is_symbol(d)]
    if len(symbols) > 1:
        raise AutodiffError(f"cannot reshape {g.type} to a shape with several symbols {shape}")
    target = tuple(-1 if is_symbol(d) else d for d in shape)
    return b.op("reshape", [g], {"shape": target})


def rows(b: Builder, v: Value) -> Value:
    """`v` [..., k] as a 2-D [M, k] matrix, so a batched product's weight gradient is one GEMM."""
    t = v.type
    if t.rank == 2:
        return v
    if t.rank == 1:
        return reshape_to(b, v, (1, t.shape[0]))
    lead = t.shape[:-1]
    symbols = [d for d in lead if is_symbol(d)]
    static = math.prod(d for d in lead if isinstance(d, int))
    if is_symbol(t.shape[-1]) or (symbols and (len(symbols) > 1 or static != 1)):
        # `reshape` lets -1 stand only for one symbol, so [N, 4, k] cannot become [4N, k]
        raise AutodiffError(
            f"cannot flatten {t} to [M, {t.shape[-1]}]: its leading dims mix a symbol with "
            "other dims (flatten the input before the GEMM)"
        )
    return b.op("reshape", [v], {"shape": (-1, t.shape[-1])})


def count(b: Builder, shape: Sequence[Dim], like: Value) -> Value:
    """The number of elements of `shape` as a scalar in `like`'s dtype.

    A symbolic size is known only at run time, so it is counted as the sum of a broadcast one
    (the IR has no shape-query op); static sizes are plain constants.
    """
    shape = tuple(shape)
    if all(isinstance(d, int) for d in shape):
        return const(b, float(math.prod(shape)), like)  # type: ignore[arg-type]
    ones = b.op("broadcast", [const(b, 1.0, like)], {"shape": shape})
    return b.op("sum", [ones], {"axes": None})


def unreduce(b: Builder, g: Value, x: TensorType, axes: Sequence[int], keepdims: bool) -> Value:
    """The cotangent of a reduction over `axes` of `x`, broadcast back to `x`'s shape."""
    # reducing leading axes leaves trailing ones, which broadcast aligns by itself: no reshape
    if not keepdims and tuple(axes) != tuple(range(len(axes))):
        kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        g = reshape_to(b, g, kept)
    if g.type.shape == x.shape:
        return g
    return b.op("broadcast", [g], {"shape": x.shape})


Values = tuple[Value, ...]
Cotangents = tuple["Value | None", ...]
Needs = tuple[bool, ...]
Grads = tuple["Value | None", ...]


def unary(rule: Callable[[Builder, Value, Value, Value], Value]) -> Callable[..., Grads]:
    """Adapt `rule(b, x, y, g) -> dx` of a one-input, one-output op to the full VJP signature."""

    def vjp(b: Builder, node: Node, xs: Values, ys: Values, gs: Cotangents, needs: Needs) -> Grads:
        g = gs[0]
        assert g is not None  # autodiff calls a rule only for results that got a cotangent
        return (rule(b, xs[0], ys[0], g),)

    vjp.__name__ = rule.__name__
    vjp.__doc__ = rule.__doc__
    return vjp


VjpFn = Callable[[Builder, Node, Values, Values, Cotangents, Needs], Grads]
