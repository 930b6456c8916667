"""The builder interface that VJP rules are written against, and the helpers the rules share.

A rule `vjp(b, attrs, xs, ys, needs, *gs) -> cotangents` computes through `b` alone:
- `b.<op>(*inputs, **attrs)` applies any op of the table by name (`b.mul(g, y)`,
  `b.sum(g, axes=(0,))`); an op with several results returns a tuple;
- `b.shape(v)` is v's shape (ints; in the IR a dim may be a symbol such as "N"), `b.dtype(v)`
  its dtype;
- `b.const(value, like)` is a scalar of `like`'s dtype (lucid never promotes implicitly), and
  `b.count(shape, like)` the number of elements of `shape` as one (the IR counts a symbolic
  size at run time).
`xs`/`ys` stand for the op's inputs and results, `needs[i]` says whether input i wants a
cotangent, and the cotangents of the results come last, one argument each (a one-result op's
rule takes `g`; None where no gradient reaches a result); the rule returns one cotangent per
input (None where not needed), of that input's shape and dtype. Cotangents come last so that
eager lucid records a rule as `functools.partial(rule, EAGER, attrs, xs, ys, needs)`, which the
tape calls with the cotangent at no extra Python frame.

The same rule runs twice over: eager `Tensor.backward` runs it with `EagerGrad`, where values
are ndarrays and each call runs the op's NumPy kernel at once; the IR reverse pass
(lucid/ir/autodiff.py) runs it with a builder that records each call as a node. As with JAX's
primitives, there is one derivative per op and two ways to execute it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any, Protocol

from lucid.errors import AutodiffError
from lucid.ir.types import Dim, is_symbol


class GradBuilder(Protocol):
    """What a VJP rule may call (see the module docstring)."""

    def shape(self, v: Any) -> tuple[Dim, ...]: ...

    def dtype(self, v: Any) -> Any: ...

    def const(self, value: float, like: Any) -> Any: ...

    def count(self, shape: Sequence[Dim], like: Any) -> Any: ...

    def __getattr__(self, op: str) -> Callable[..., Any]: ...


class EagerGrad:
    """The builder of eager backward: each op is its NumPy kernel, called at once."""

    def __init__(self, kernels: Mapping[str, Callable[..., Any] | None]) -> None:
        for name, kernel in kernels.items():
            if kernel is not None:
                setattr(self, name, kernel)

    # v's shape and NumPy dtype (ndarrays and NumPy scalars alike); attrgetter: no Python frame
    shape = staticmethod(attrgetter("shape"))
    dtype = staticmethod(attrgetter("dtype"))

    @staticmethod
    def const(value: float, like: Any, _made: dict[tuple[Any, float], Any] = {}) -> Any:  # noqa: B006
        """A NumPy scalar of like's dtype, made once per dtype and value (rules ask each call)."""
        key = (like.dtype, value)
        made = _made.get(key)
        if made is None:
            made = _made[key] = like.dtype.type(value)
        return made

    @staticmethod
    def count(shape: Sequence[int], like: Any, _made: dict[tuple[Any, ...], Any] = {}) -> Any:  # noqa: B006
        """The number of elements of `shape` as a NumPy scalar of like's dtype (made once)."""
        key = (like.dtype, *shape)
        made = _made.get(key)
        if made is None:
            made = _made[key] = like.dtype.type(math.prod(shape))
        return made

    def __getattr__(self, op: str) -> Callable[..., Any]:  # only reached for a name not set
        raise AttributeError(f"no op {op!r} in the table (a VJP rule asked for it)")


_TABLE_BUILDER: list[EagerGrad] = []  # the table's EAGER, bound by lucid.ir.ops (bind_eager)


def bind_eager(builder: EagerGrad) -> None:
    """Give composite kernels the table's eager builder. lucid.ir.ops calls this once its table
    is complete: this module cannot import the table, whose families import this module."""
    _TABLE_BUILDER[:] = [builder]


def expanded_kernel(expand: Callable[..., tuple[Any, ...]]) -> Callable[..., Any]:
    """The NumPy kernel of a one-result composite op: its expansion (OpDef.expand) run by the
    eager builder, so eager lucid, the interpreter and the expanded graph compute alike."""

    def kernel(*xs: Any, **attrs: Any) -> Any:
        return expand(_TABLE_BUILDER[0], attrs, xs)[0]

    kernel.__doc__ = expand.__doc__
    return kernel


# ---------------------------------------------------------------- helpers for the rules


def unary(rule: Callable[[Any, Any, Any, Any], Any]) -> Callable[..., tuple[Any, ...]]:
    """Adapt `rule(b, x, y, g) -> dx` of a one-input, one-result op to the full signature."""

    def vjp(b: GradBuilder, attrs: Any, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
        return (rule(b, xs[0], ys[0], g),)

    vjp.__name__ = getattr(rule, "__name__", "vjp")
    vjp.__doc__ = rule.__doc__
    return vjp


def sum_to(b: GradBuilder, g: Any, shape: Sequence[Dim]) -> Any:
    """`g` summed back to `shape` when broadcasting stretched it; `g` itself otherwise."""
    return g if b.shape(g) == shape else b.sum_to(g, shape=tuple(shape))


def reshape_to(b: GradBuilder, g: Any, shape: Sequence[Dim]) -> Any:
    """`g` reshaped to `shape`, its one symbolic dim (if any) written as -1."""
    shape = tuple(shape)
    if b.shape(g) == shape:
        return g
    symbols = [d for d in shape if is_symbol(d)]
    if len(symbols) > 1:
        raise AutodiffError(f"cannot reshape {b.shape(g)} to a shape with several symbols {shape}")
    return b.reshape(g, shape=tuple(-1 if is_symbol(d) else d for d in shape))


def rows(b: GradBuilder, v: Any) -> Any:
    """`v` [..., k] as a 2-D [M, k] matrix, so a batched product's weight gradient is one GEMM."""
    shape = b.shape(v)
    if len(shape) == 2:
        return v
    if len(shape) == 1:
        return reshape_to(b, v, (1, shape[0]))
    lead = shape[:-1]
    symbols = [d for d in lead if is_symbol(d)]
    static = math.prod(d for d in lead if isinstance(d, int))
    if is_symbol(shape[-1]) or (symbols and (len(symbols) > 1 or static != 1)):
        # `reshape` lets -1 stand only for one symbol, so [N, 4, k] cannot become [4N, k]
        raise AutodiffError(
            f"cannot flatten {shape} to [M, {shape[-1]}]: its leading dims mix a symbol with "
            "other dims (flatten the input before the GEMM)"
        )
    return b.reshape(v, shape=(-1, shape[-1]))


def flattenable(shape: Sequence[Dim]) -> bool:
    """Whether `rows` can flatten a value of `shape` to a 2-D [M, k] type."""
    if len(shape) <= 2:
        return True
    symbols = [d for d in shape[:-1] if is_symbol(d)]
    static = math.prod(d for d in shape[:-1] if isinstance(d, int))
    return not is_symbol(shape[-1]) and not (symbols and (len(symbols) > 1 or static != 1))


def rows_t_matmul(b: GradBuilder, x: Any, y: Any) -> Any:
    """rows(x)^T @ rows(y) [k, n] for x [..., k], y [..., n] with the same leading dims: one
    GEMM. When the leading dims cannot be flattened to one type dim ([N, 4, k] under a dynamic
    batch), `matmul_at` contracts over them directly (its K is their product at run time)."""
    if flattenable(b.shape(x)) and flattenable(b.shape(y)):
        return b.matmul(b.transpose(rows(b, x), perm=(1, 0)), rows(b, y))
    return b.matmul_at(x, y)


def unreduce(
    b: GradBuilder, g: Any, x_shape: Sequence[Dim], axes: Sequence[int], keepdims: bool
) -> Any:
    """The cotangent of a reduction over `axes` of a value of `x_shape`, broadcast back to it."""
    x_shape = tuple(x_shape)
    # reducing leading axes leaves trailing ones, which broadcast aligns by itself: no reshape
    if not keepdims and tuple(axes) != tuple(range(len(axes))):
        g = reshape_to(b, g, tuple(1 if i in axes else d for i, d in enumerate(x_shape)))
    return g if b.shape(g) == x_shape else b.broadcast(g, shape=x_shape)
