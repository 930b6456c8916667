"""Tensor, its autograd tape, and `apply`: how an op of the table runs eagerly.

A Tensor wraps one NumPy array. Every eager op goes through `apply(op, inputs, attrs)`, which
runs the op's NumPy kernel from the op table (lucid/ir/ops/) and, when grad mode is on and an
input requires grad, records the op's one VJP rule on the result, the same rule the IR reverse
pass uses; it also reports the op to the tracer seam (`lucid._hooks`). `Tensor.backward` walks
the tape in reverse topological order with an explicit stack (lucid/_tape.py), so graph depth is
bounded by memory, not by Python's recursion limit.

The methods here only check and normalise their arguments and call `apply`; functional forms
are in lucid/functional.py and lucid/nn/functional.py.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from operator import attrgetter
from typing import Any, NamedTuple, cast

import numpy as np

from lucid import _hooks
from lucid._args import dim_arg, normalize_axes, shape_args
from lucid._indexing import is_basic
from lucid._indexing import plan as index_plan
from lucid._symbolic import SymInt, any_symbolic, concrete
from lucid._tape import (
    backward_chain,
    bad_cotangent,
    chain_of,
    general_order,
    ones_like,
    scalar_one,
    store_grad,
)
from lucid.ir.ops import EAGER, OPS, OpDef
from lucid.ir.ops.base import VjpRule

Array = np.ndarray
# Maps the output's cotangent to one cotangent (or None) per input, in input order.
BackwardFn = Callable[[Array], Sequence["Array | None"]]

_grad_enabled = True


@contextmanager
def no_grad() -> Iterator[None]:
    """Run the block without recording autograd history (ops are still reported to a tracer)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def grad_enabled() -> bool:
    """Whether ops currently record autograd history."""
    return _grad_enabled


def _as_array(data: Any, dtype: Any = None) -> Array:
    """The dtype rule of the Tensor constructor (see Tensor's docstring); always a fresh array."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.array(data, dtype=np.dtype(dtype), copy=True)
    if isinstance(data, (np.ndarray, np.generic)):
        arr = np.array(data, copy=True)
        # The IR knows one integer type; narrower integers are widened so class targets fit.
        return arr.astype(np.int64) if arr.dtype.kind in "iu" else arr
    arr = np.array(data)
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float32)
    if arr.dtype.kind == "b":
        return arr
    raise TypeError(
        f"Tensor: expected numbers, a nested list of numbers or an ndarray, got {type(data).__name__}"
        f" (numpy saw dtype {arr.dtype})"
    )


class MaxMin(NamedTuple):
    """What `max`/`min` along a dim return, like torch.return_types.max: values and indices."""

    values: Tensor
    indices: Tensor


class Tensor:
    """An n-dimensional array with reverse-mode autograd.

    Invariants: `data` is an ndarray; `grad` is None or an ndarray of `data`'s shape and dtype;
    `requires_grad` implies a floating dtype; a tensor with `_backward is None` and
    `requires_grad` is a leaf, whose `grad` accumulates across `backward` calls.

    dtype rule: Python numbers and lists become float32 (bool lists stay bool); NumPy arrays keep
    their dtype, except that integer arrays become int64; an explicit `dtype` wins. Non-Tensor
    operands mixed into an op adopt the Tensor operand's dtype; two Tensors of different dtypes
    are an error (cast one with `astype`).
    """

    __slots__ = (
        "__weakref__",
        "_backward",
        "_parents",
        "_widened_from",
        "data",
        "grad",
        "keep_grad",
        "requires_grad",
    )
    __array_ufunc__ = None  # make `ndarray + Tensor` call Tensor.__radd__, not loop elementwise
    __hash__ = object.__hash__  # __eq__ builds a Tensor, so identity hashing must be explicit

    def __init__(
        self, data: Any, requires_grad: bool = False, keep_grad: bool = False, dtype: Any = None
    ) -> None:
        self.data: Array = _as_array(data, dtype)
        given = getattr(data, "dtype", None)
        if dtype is None and isinstance(given, np.dtype) and given != self.data.dtype:
            self._widened_from = given  # for error messages: say what the caller passed
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"requires_grad=True needs a floating dtype, got {self.data.dtype}; "
                "only float tensors can have gradients"
            )
        self.requires_grad = bool(requires_grad)
        self.keep_grad = bool(keep_grad)
        self.grad: Array | None = None
        self._parents: tuple[Tensor, ...] = ()
        self._backward: BackwardFn | None = None

    @staticmethod
    def _make(
        data: Array,
        requires_grad: bool = False,
        parents: tuple[Tensor, ...] = (),
        backward: BackwardFn | None = None,
    ) -> Tensor:
        """The one constructor of op results and runtime outputs: wraps `data` (an ndarray) as
        is, without the copy and dtype rule of `Tensor(...)`, with its tape entry if it has one.
        (A staticmethod: it runs once per eager op, and Parameters are made by __init__.)"""
        out = _new(Tensor)
        out.data = data
        out.requires_grad = requires_grad
        out.keep_grad = False
        out.grad = None
        out._parents = parents
        out._backward = backward
        return out

    # ------------------------------------------------------------ plain attributes

    @property
    def shape(self) -> tuple[Any, ...]:
        """The shape of `data`; while a dynamic batch is traced, the batch dim is a SymInt."""
        if _hooks.active is not None:
            return _hooks.active.shape(self)
        return self.data.shape

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return self.data.ndim

    @property
    def size(self) -> Any:
        """The number of elements (a SymInt under a traced dynamic batch, as `shape`)."""
        if _hooks.active is not None:
            return math.prod(self.shape)
        return self.data.size

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype of `data`."""
        return self.data.dtype

    @property
    def is_leaf(self) -> bool:
        """True unless this tensor was produced by an op that records history."""
        return self._backward is None

    def __repr__(self) -> str:
        grad = None if self.grad is None else str(self.grad)
        return f"{type(self).__name__}({self.data}, grad={grad})"

    def __str__(self) -> str:
        return str(self.data)

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d Tensor")
        if _hooks.active is not None:  # len() must be an int: a symbolic batch specializes
            return operator.index(self.shape[0])
        return self.data.shape[0]

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (sets `grad` to None)."""
        self.grad = None

    # ------------------------------------------------------------ leaving the graph

    def numpy(self) -> Array:
        """The underlying ndarray (shared, not copied)."""
        _hooks.unsupported("Tensor.numpy()", (self,))
        return self.data

    def item(self) -> Any:
        """The single element as a Python scalar."""
        _hooks.unsupported("Tensor.item()", (self,))
        if self.data.size != 1:
            raise ValueError(f"item() needs a Tensor with one element, got shape {self.shape}")
        return self.data.item()

    def tolist(self) -> Any:
        """The data as nested Python lists."""
        _hooks.unsupported("Tensor.tolist()", (self,))
        return self.data.tolist()

    def __bool__(self) -> bool:
        _hooks.unsupported("bool(Tensor) (data-dependent control flow)", (self,))
        return bool(self.data)

    def __float__(self) -> float:
        _hooks.unsupported("float(Tensor)", (self,))
        return float(self.data)

    def __int__(self) -> int:
        _hooks.unsupported("int(Tensor)", (self,))
        return int(self.data)

    def __index__(self) -> int:
        _hooks.unsupported("Tensor.__index__ (a Tensor used as an index)", (self,))
        if self.data.dtype.kind not in "iub":
            raise TypeError(f"only integer Tensors can be used as an index, got {self.dtype}")
        return int(self.data)

    def __getitem__(self, index: Any) -> Tensor:
        """x[index]: ints, slices (positive steps), `...` and None trace as slice and reshape ops;
        advanced indexing (Tensors, arrays, lists) runs eagerly with a gradient, untraceable."""
        if is_basic(index):
            p = index_plan(index, self.shape, self.data.shape)
            out = apply(_SLICE, (self,), p.slice_attrs) if p.slice_attrs["axes"] else self
            return out if p.shape is None else out.reshape(p.shape)
        _hooks.unsupported("Tensor.__getitem__ (advanced indexing)", (self,))
        idx = _plain_index(index)
        shape, dtype = self.data.shape, self.dtype

        def backward(g: Array) -> tuple[Array]:
            full = np.zeros(shape, dtype=dtype)
            np.add.at(full, idx, g)  # add.at, not +=, so repeated indices accumulate
            return (full,)

        return attach(Tensor._make(np.array(self.data[idx])), (self,), backward)

    def __setitem__(self, index: Any, value: Any) -> None:
        """x[index] = value in place; refused while x takes part in autograd."""
        _hooks.unsupported("Tensor.__setitem__ (in-place assignment)", (self,))
        if self.requires_grad and _grad_enabled:
            raise RuntimeError(
                "in-place assignment to a Tensor that requires grad would corrupt its gradient; "
                "do it under lucid.no_grad() or on a tensor with requires_grad=False"
            )
        self.data[_plain_index(index)] = value.data if isinstance(value, Tensor) else value
        if hasattr(self, "_version"):
            self._version += 1  # a Parameter: repack its weights

    # ------------------------------------------------------------ autograd

    def backward(self, grad: Any = None) -> None:
        """Accumulate d(self)/d(leaf) * grad into every leaf's `.grad`; grad defaults to ones."""
        if _hooks.backward(self, grad):  # a traced training step: differentiated in the graph
            return
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a Tensor that does not require grad: no input of the ops that "
                "produced it had requires_grad=True (or it was computed under lucid.no_grad())"
            )
        if grad is None:  # lucid semantics: any shape seeds with ones
            seed = scalar_one(self.data.dtype) if self.data.ndim == 0 else ones_like(self.data)
        else:
            seed = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if seed.shape != self.shape:
                raise ValueError(
                    f"backward: grad has shape {seed.shape}, expected the tensor's shape {self.shape}"
                )
        chain = chain_of(self)
        if chain is not None:
            backward_chain(chain, seed)
            return
        grads: dict[int, Array] = {id(self): seed}
        for node in reversed(general_order(self)):
            g = grads.pop(id(node), None)  # popping frees intermediate cotangents early
            if g is None:
                continue
            if node._backward is None or node.keep_grad:
                store_grad(node, g)
            if node._backward is None:
                continue
            for parent, pg in zip(node._parents, node._backward(g)):
                if pg is None or not parent.requires_grad:
                    continue
                if pg.shape != parent.data.shape:  # an op's rule is wrong: fail loudly, here
                    raise bad_cotangent(pg, parent)
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg

    # ------------------------------------------------------------ arithmetic

    def __add__(self, other: Any) -> Tensor:
        return binary(_ADD, self, other)

    def __radd__(self, other: Any) -> Tensor:
        return binary(_ADD, other, self)

    def __sub__(self, other: Any) -> Tensor:
        return binary(_SUB, self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return binary(_SUB, other, self)

    def __mul__(self, other: Any) -> Tensor:
        return binary(_MUL, self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return binary(_MUL, other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return binary(_DIV, self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return binary(_DIV, other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul(other, self)

    def __neg__(self) -> Tensor:
        return apply(_NEG, (self,))

    def __pow__(self, exponent: Any) -> Tensor:
        if isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
            raise TypeError(
                f"pow: the exponent must be a Python int or float, got {type(exponent).__name__}"
            )
        return apply(_POW, (self,), {"exponent": float(exponent)})

    def __abs__(self) -> Tensor:
        return apply(_ABS, (self,))

    def __lt__(self, other: Any) -> Tensor:
        return binary(_LESS, self, other)

    def __le__(self, other: Any) -> Tensor:
        return binary(_LESS_EQUAL, self, other)

    def __gt__(self, other: Any) -> Tensor:
        return binary(_GREATER, self, other)

    def __ge__(self, other: Any) -> Tensor:
        return binary(_GREATER_EQUAL, self, other)

    def __eq__(self, other: object) -> Tensor:  # type: ignore[override]
        return binary(_EQUAL, self, other)

    def __ne__(self, other: object) -> Tensor:  # type: ignore[override]
        return binary(_NOT_EQUAL, self, other)

    # ------------------------------------------------------------ methods

    def exp(self) -> Tensor:
        """Elementwise e**x."""
        return apply(float_input(_EXP, self), (self,))

    def log(self) -> Tensor:
        """Elementwise natural logarithm."""
        return apply(float_input(_LOG, self), (self,))

    def sqrt(self) -> Tensor:
        """Elementwise square root."""
        return apply(float_input(_SQRT, self), (self,))

    def tanh(self) -> Tensor:
        """Elementwise tanh."""
        return apply(float_input(_TANH, self), (self,))

    def abs(self) -> Tensor:
        """Elementwise absolute value; the gradient at 0 is 0."""
        return apply(_ABS, (self,))

    def sigmoid(self) -> Tensor:
        """Elementwise logistic sigmoid."""
        return apply(float_input(_SIGMOID, self), (self,))

    def relu(self) -> Tensor:
        """Elementwise max(x, 0)."""
        return apply(float_input(_RELU, self), (self,))

    def softmax(self, dim: int) -> Tensor:
        """exp(x) / sum(exp(x)) along `dim` (negative counts from the end), max-stabilised."""
        return apply(
            float_input(_SOFTMAX, self), (self,), {"dim": _softmax_dim("softmax", self, dim)}
        )

    def log_softmax(self, dim: int) -> Tensor:
        """log(softmax(x, dim)), computed as (x - max) - log(sum(exp(x - max)))."""
        attrs = {"dim": _softmax_dim("log_softmax", self, dim)}
        return apply(float_input(_LOG_SOFTMAX, self), (self,), attrs)

    def clip(self, min: float | None = None, max: float | None = None) -> Tensor:
        """Clamp into [min, max]; None leaves that side open; NaN passes through."""
        lo = -np.inf if min is None else float(min)
        hi = np.inf if max is None else float(max)
        if lo > hi:
            raise ValueError(f"clip: min must not exceed max, got min={lo}, max={hi}")
        return apply(float_input(_CLIP, self), (self,), {"min": lo, "max": hi})

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Sum over `axis` (all axes when None)."""
        axes = normalize_axes("sum", axis, self.data.ndim)
        return apply(_SUM, (self,), {"axes": axes, "keepdims": bool(keepdims)})

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Arithmetic mean over `axis` (all axes when None)."""
        axes = normalize_axes("mean", axis, self.data.ndim)
        return apply(float_input(_MEAN, self), (self,), {"axes": axes, "keepdims": bool(keepdims)})

    def max(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """The largest element (dim None), or (values, indices) along `dim` like torch.max.

        NaN propagates. The gradient is shared evenly among elements tied for the maximum
        (PyTorch's amax rule; torch.max(x, dim) gives it all to the returned index)."""
        return self._extremum(_MAX, _ARGMAX, dim, keepdim)

    def min(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """The smallest element (dim None), or (values, indices) along `dim`; see `max`."""
        return self._extremum(_MIN, _ARGMIN, dim, keepdim)

    def _extremum(self, op: OpDef, arg: OpDef, dim: int | None, keepdim: bool) -> Any:
        if self.dtype.kind not in "fi":
            raise TypeError(f"{op.name}: expected a numeric Tensor, got dtype {self.dtype}")
        if dim is None:
            if self.data.size == 0:
                raise ValueError(f"{op.name}: the tensor of shape {self.shape} is empty")
            return apply(op, (self,), {"axes": tuple(range(self.ndim)), "keepdims": False})
        d = dim_arg(op.name, dim, max(self.ndim, 1), self.shape)
        if self.ndim == 0:
            return MaxMin(self, apply(_CAST, (self,), {"dtype": np.dtype(np.int64)}) * 0)
        if self.data.shape[d] == 0:
            raise ValueError(f"{op.name}: dim {d} of the tensor of shape {self.shape} is empty")
        values = apply(op, (self,), {"axes": (d,), "keepdims": bool(keepdim)})
        return MaxMin(values, apply(arg, (self,), {"axis": d, "keepdims": bool(keepdim)}))

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """The index (int64, the first of ties) of the largest element along `dim`, or of the
        flattened tensor when dim is None."""
        return self._arg(_ARGMAX, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """The index of the smallest element; see `argmax`."""
        return self._arg(_ARGMIN, dim, keepdim)

    def _arg(self, op: OpDef, dim: int | None, keepdim: bool) -> Tensor:
        if self.dtype.kind not in "fi":
            raise TypeError(f"{op.name}: expected a numeric Tensor, got dtype {self.dtype}")
        if self.data.size == 0:
            raise ValueError(f"{op.name}: the tensor of shape {self.shape} is empty")
        if dim is None:
            flat = apply(op, (self.reshape(-1),), {"axis": 0, "keepdims": False})
            return flat.reshape((1,) * self.ndim) if keepdim else flat
        if self.ndim == 0:
            dim_arg(op.name, dim, 1, self.shape)
            return apply(_CAST, (self,), {"dtype": np.dtype(np.int64)}) * 0
        d = dim_arg(op.name, dim, self.ndim, self.shape)
        return apply(op, (self,), {"axis": d, "keepdims": bool(keepdim)})

    def var(
        self, dim: int | Sequence[int] | None = None, correction: float = 1, keepdim: bool = False
    ) -> Tensor:
        """Variance over `dim` (all dims when None): sum((x - mean)^2) / max(0, n - correction),
        as torch.var (correction=1: Bessel's; under a dynamic batch n may be the batch size)."""
        axes = normalize_axes("var", dim, self.ndim)
        d = self - self.mean(axes, keepdims=True)  # mean checks for a float tensor
        n = math.prod(self.shape[a] for a in axes)
        denom = n - correction
        if not isinstance(denom, SymInt):
            denom = max(0, denom)
        return (d * d).sum(axes, keepdims=keepdim) / denom

    def std(
        self, dim: int | Sequence[int] | None = None, correction: float = 1, keepdim: bool = False
    ) -> Tensor:
        """sqrt(var(dim, correction, keepdim))."""
        return self.var(dim, correction, keepdim).sqrt()

    def masked_fill(self, mask: Any, value: Any) -> Tensor:
        """`value` where the bool `mask` (broadcast to x's shape) is True, x elsewhere."""
        c = mask if isinstance(mask, Tensor) else Tensor(np.asarray(mask))
        if c.dtype != np.bool_:
            raise TypeError(f"masked_fill: the mask must be a bool Tensor, got dtype {c.dtype}")
        try:
            fits = np.broadcast_shapes(c.data.shape, self.data.shape) == self.data.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"masked_fill: a mask of shape {c.shape} does not broadcast to {self.shape}"
            )
        v = constant(value, self)
        if v.ndim != 0 or v.dtype != self.dtype:
            raise TypeError(f"masked_fill: value must be a number or a 0-d Tensor of {self.dtype}")
        return apply(_WHERE, (c, v, self))

    def tril(self, diagonal: int = 0) -> Tensor:
        """Zeros above the `diagonal`-th diagonal of the last two dims (a constant mask; a
        symbolic size there specializes the trace to it)."""
        return self._triangle("tril", diagonal)

    def triu(self, diagonal: int = 0) -> Tensor:
        """Zeros below the `diagonal`-th diagonal of the last two dims; see `tril`."""
        return self._triangle("triu", diagonal)

    def _triangle(self, op: str, diagonal: int) -> Tensor:
        if self.ndim < 2:
            raise ValueError(f"{op}: needs at least 2 dims, got a tensor of shape {self.shape}")
        rows, cols = (operator.index(d) for d in self.shape[-2:])
        keep = np.ones((rows, cols), dtype=bool)
        keep = np.tril(keep, diagonal) if op == "tril" else np.triu(keep, diagonal)
        return self.masked_fill(Tensor(~keep), 0)

    def reshape(self, *shape: Any) -> Tensor:
        """Same data in a new shape; accepts reshape(2, 3) or reshape((2, 3)), one -1 allowed."""
        symbolic = shape_args("reshape", shape)
        new = concrete(symbolic)
        if new.count(-1) > 1 or any(n < -1 for n in new):
            raise ValueError(
                f"reshape: invalid shape {new}: sizes must be >= 0, with at most one -1"
            )
        try:
            self.data.reshape(new)  # a view: checks the size the way NumPy counts it
        except ValueError:
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {self.data.shape} "
                f"({self.data.size} elements) into {new}"
            ) from None
        return apply_shaped(_RESHAPE, (self,), {"shape": new}, symbolic)

    def transpose(self, *perm: Any) -> Tensor:
        """Permute axes; no arguments reverses them."""
        p = shape_args("transpose", perm) if perm else tuple(reversed(range(self.ndim)))
        if sorted(p) != list(range(self.ndim)):
            raise ValueError(
                f"transpose: {p} is not a permutation of the {self.ndim} axes of a tensor of "
                f"shape {self.shape}"
            )
        return apply(_TRANSPOSE, (self,), {"perm": p})

    def permute(self, *dims: Any) -> Tensor:
        """Reorder the axes: permute(2, 0, 1) or permute((2, 0, 1)); negative dims count back."""
        p = shape_args("permute", dims)
        if len(p) != self.ndim:
            raise ValueError(
                f"permute: {p} names {len(p)} dims, but the tensor of shape {self.shape} has "
                f"{self.ndim}"
            )
        return self.transpose(*(dim_arg("permute", d, self.ndim, self.shape) for d in p))

    def view(self, *shape: Any) -> Tensor:
        """The same as `reshape` (lucid tensors are always contiguous)."""
        return self.reshape(*shape)

    def unsqueeze(self, dim: int) -> Tensor:
        """A new axis of size 1 at `dim` (in [-ndim - 1, ndim], as PyTorch)."""
        d = dim_arg("unsqueeze", dim, self.ndim + 1, self.shape)
        shape = list(self.shape)
        shape.insert(d, 1)
        return self.reshape(tuple(shape))

    def squeeze(self, dim: int | Sequence[int] | None = None) -> Tensor:
        """Drop axes of size 1: all of them, or those of `dim` (others are left alone).

        Under a traced dynamic batch, asking whether the batch is 1 is a guard on N."""
        shape = self.shape
        if dim is None:
            dims = set(range(self.ndim))
        else:
            raw = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
            dims = {dim_arg("squeeze", d, max(self.ndim, 1), shape) for d in raw}
        kept = tuple(n for k, n in enumerate(shape) if not (k in dims and n == 1))
        return self if len(kept) == self.ndim else self.reshape(kept)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge the axes start_dim..end_dim (inclusive) into one; a 0-d tensor becomes [1]."""
        if self.ndim == 0:
            return self.reshape(1)
        lo = dim_arg("flatten", start_dim, self.ndim, self.shape)
        hi = dim_arg("flatten", end_dim, self.ndim, self.shape)
        if lo > hi:
            raise ValueError(
                f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for a tensor of "
                f"shape {self.shape}"
            )
        shape = self.shape
        return self.reshape((*shape[:lo], math.prod(shape[lo : hi + 1]), *shape[hi + 1 :]))

    def split(
        self, split_size_or_sections: int | Sequence[int], dim: int = 0
    ) -> tuple[Tensor, ...]:
        """Pieces along `dim`: of `split_size` each (the last may be smaller), or of the given
        sizes, which must sum to the dim's size (torch.split)."""
        d = dim_arg("split", dim, self.ndim, self.shape)
        n = self.data.shape[d]
        if isinstance(split_size_or_sections, (int, np.integer)):
            size = int(split_size_or_sections)
            if size <= 0:
                raise ValueError(f"split: split_size must be positive, got {size}")
            sizes = [min(size, n - lo) for lo in range(0, n, size)] or [0]
        else:
            sizes = [operator.index(k) for k in split_size_or_sections]
            if sum(sizes) != n or any(k < 0 for k in sizes):
                raise ValueError(
                    f"split: sizes {sizes} must be non-negative and sum to {n}, the size of dim "
                    f"{d} of the tensor of shape {self.shape}"
                )
        pieces = []
        lo = 0
        for k in sizes:
            cut = {"axes": (d,), "starts": (lo,), "stops": (lo + k,), "steps": (1,)}
            pieces.append(apply(_SLICE, (self,), cut))
            lo += k
        return tuple(pieces)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        """`chunks` pieces along `dim` of ceil(size / chunks) each (fewer if they run out)."""
        if chunks <= 0:
            raise ValueError(f"chunk: chunks must be positive, got {chunks}")
        d = dim_arg("chunk", dim, self.ndim, self.shape)
        n = self.data.shape[d]
        return self.split(max(1, -(-n // chunks)), d)

    @property
    def T(self) -> Tensor:
        """The tensor with its axes reversed."""
        return self.transpose()

    def broadcast_to(self, shape: Sequence[int]) -> Tensor:
        """Broadcast to `shape` following NumPy's rules (a fresh, writable array)."""
        symbolic = shape_args("broadcast_to", (shape,))
        target = concrete(symbolic)
        try:
            np.broadcast_to(self.data, target)  # a view: checks the shapes by NumPy's rules
        except ValueError:
            raise ValueError(
                f"broadcast_to: cannot broadcast shape {self.data.shape} to {target}"
            ) from None
        return apply_shaped(_BROADCAST, (self,), {"shape": target}, symbolic)

    def astype(self, dtype: Any) -> Tensor:
        """Cast to `dtype`; gradients flow back only between floating dtypes."""
        return apply(_CAST, (self,), {"dtype": np.dtype(dtype)})

    def detach(self) -> Tensor:
        """The same values (shared data), cut from the autograd graph."""
        return apply(_STOP_GRADIENT, (self,))


_new = object.__new__
_NO_ATTRS: dict[str, Any] = {}
_DATA = attrgetter("data")
_REQUIRES_GRAD = attrgetter("requires_grad")
# the ops the methods apply, looked up once (they run once per eager op)
_ABS = OPS["abs"]
_ADD = OPS["add"]
_BROADCAST = OPS["broadcast"]
_CAST = OPS["cast"]
_CLIP = OPS["clip"]
_DIV = OPS["div"]
_EQUAL = OPS["equal"]
_EXP = OPS["exp"]
_GREATER = OPS["greater"]
_GREATER_EQUAL = OPS["greater_equal"]
_LESS = OPS["less"]
_LESS_EQUAL = OPS["less_equal"]
_LOG = OPS["log"]
_LOG_SOFTMAX = OPS["log_softmax"]
_ARGMAX = OPS["argmax"]
_ARGMIN = OPS["argmin"]
_MATMUL = OPS["matmul"]
_BATCH_MATMUL = OPS["batch_matmul"]
_NO_TRANS = {"trans_a": False, "trans_b": False}
_MAX = OPS["max"]
_MIN = OPS["min"]
_MEAN = OPS["mean"]
_MUL = OPS["mul"]
_NEG = OPS["neg"]
_NOT_EQUAL = OPS["not_equal"]
_POW = OPS["pow"]
_RELU = OPS["relu"]
_RESHAPE = OPS["reshape"]
_SIGMOID = OPS["sigmoid"]
_SLICE = OPS["slice"]
_SOFTMAX = OPS["softmax"]
_SQRT = OPS["sqrt"]
_STOP_GRADIENT = OPS["stop_gradient"]
_SUB = OPS["sub"]
_SUM = OPS["sum"]
_TANH = OPS["tanh"]
_TRANSPOSE = OPS["transpose"]
_WHERE = OPS["where"]


def apply(op: OpDef, inputs: tuple[Tensor, ...], attrs: dict[str, Any] = _NO_ATTRS) -> Tensor:
    """Run `op` eagerly: its NumPy kernel now, its VJP rule later (if a gradient is needed).

    `inputs` are Tensors of one dtype and `attrs` complete and normalised (what the IR would
    hold); the callers, Tensor's methods and the functional forms, check user arguments first.
    """
    # unrolled for one and two inputs: this runs once per eager op, and a comprehension or a
    # map costs as much as the tuple it builds
    if len(inputs) == 2:
        x, y = inputs
        arrays: tuple[Array, ...] = (x.data, y.data)
        needs: tuple[bool, ...] = (x.requires_grad, y.requires_grad)
    elif len(inputs) == 1:
        arrays, needs = (inputs[0].data,), (inputs[0].requires_grad,)
    elif len(inputs) == 3:  # linear with a bias, where
        x, y, z = inputs
        arrays, needs = (
            (x.data, y.data, z.data),
            (x.requires_grad, y.requires_grad, z.requires_grad),
        )
    else:
        arrays, needs = tuple(map(_DATA, inputs)), tuple(map(_REQUIRES_GRAD, inputs))
    kernel = op.numpy
    if kernel is None:  # region ops and gradient-only companions run only inside a graph
        raise TypeError(f"op {op.name!r} has no NumPy kernel, so it cannot run eagerly")
    data = kernel(*arrays, **attrs) if attrs else kernel(*arrays)
    if type(data) is not np.ndarray:
        data = np.asarray(data)  # NumPy gives scalars, not 0-d arrays, for ops on 0-d arrays
    if _grad_enabled and op.differentiable and True in needs and data.dtype.kind == "f":
        vjp = cast(VjpRule, op.vjp)  # what `differentiable` means: a callable rule
        rule: BackwardFn
        if data.ndim:  # the tape calls the rule with the cotangent
            rule = partial(vjp, EAGER, attrs, arrays, (data,), needs)
        else:  # a loss: its rule computes on a NumPy scalar, a quarter of a 0-d array's cost
            rule = partial(_on_scalar, vjp, attrs, arrays, (data,), needs)
        out = Tensor._make(data, True, inputs, rule)
    else:
        out = Tensor._make(data)
    if _hooks.active is not None:
        _hooks.record(op.name, inputs, attrs, out)
    return out


def apply_shaped(
    op: OpDef, inputs: tuple[Tensor, ...], attrs: dict[str, Any], symbolic: tuple[Any, ...]
) -> Tensor:
    """`apply` of an op whose `shape` attr may hold SymInts (only while a trace runs): the
    kernel computes with `attrs` (their hints), the tracer records the symbolic shape."""
    hook = _hooks.active
    if hook is None or not any_symbolic(symbolic):
        return apply(op, inputs, attrs)
    _hooks.active = None  # one record, below, with the symbols
    try:
        out = apply(op, inputs, attrs)
    finally:
        _hooks.active = hook
    hook.record(op.name, inputs, {**attrs, "shape": symbolic}, out)
    return out


def _on_scalar(
    rule: Any, attrs: Any, xs: Any, ys: Any, needs: Any, g: Array
) -> Sequence[Array | None]:
    """The VJP `rule` of a 0-d result, run on its cotangent as a NumPy scalar."""
    return rule(EAGER, attrs, xs, ys, needs, g[()])


def attach(out: Tensor, inputs: tuple[Tensor, ...], backward: BackwardFn) -> Tensor:
    """Give `out` a tape entry with a backward of its own (for what is not an op of the table:
    indexing, dropout's mask, a compiled module's backward) if grad mode is on and an input
    requires grad."""
    if _grad_enabled and any(t.requires_grad for t in inputs):
        out.requires_grad = True
        out._parents = inputs
        out._backward = backward
    return out


# ---------------------------------------------------------------- operands and arguments


def constant(value: Any, like: Tensor | None = None) -> Tensor:
    """Wrap a non-Tensor operand as a constant Tensor in `like`'s dtype (or the default rule)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, SymInt):  # a size read in a trace: a graph value, not a constant
        out = constant(value.hint, like)
        if _hooks.active is not None:
            _hooks.active.bind_size(out, value)
        return out
    if like is not None:
        arr = np.asarray(value)
        # Constants are weakly typed: they take the Tensor operand's dtype, unless that would
        # silently truncate (a float constant against an integer tensor keeps its own dtype).
        if like.dtype.kind == "f" or arr.dtype.kind in "iub":
            return Tensor(arr, dtype=like.dtype)
    return Tensor(value)


def given_dtype(t: Tensor) -> str:
    """`t`'s dtype for a message, with the dtype of the array it was made from when the Tensor
    constructor widened it (an int32 array becomes int64: the message must say int32 came)."""
    widened = getattr(t, "_widened_from", None)
    return f"{t.dtype} (made from a {widened} array)" if widened is not None else str(t.dtype)


def operands(op: str, a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Both operands of a binary op as Tensors of one dtype, or a TypeError naming both."""
    if not isinstance(a, Tensor):
        a = constant(a, b)
    elif not isinstance(b, Tensor):
        b = constant(b, a)
    if a.data.dtype != b.data.dtype:  # .data directly: this runs for every binary op
        raise TypeError(
            f"{op}: operands have different dtypes {given_dtype(a)} and {given_dtype(b)}; "
            "lucid does not promote implicitly, convert one with .astype()"
        )
    return a, b


def binary(op: OpDef, a: Any, b: Any) -> Tensor:
    """A two-input op of the table on operands that may be Python numbers or arrays."""
    a, b = operands(op.name, a, b)
    if op is _DIV and a.data.dtype.kind != "f":
        raise TypeError(f"div: expected floating-point Tensors, got dtype {a.dtype}")
    return apply(op, (a, b))


def _softmax_dim(op: str, x: Tensor, dim: Any) -> int:
    """`dim` of softmax/log_softmax as a non-negative axis of x, or an error naming op and shape."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    ndim = x.data.ndim
    if not -ndim <= dim < ndim:
        expected = f"expected dim in [{-ndim}, {ndim - 1}]" if ndim else "it has no dims"
        raise IndexError(
            f"{op}: dim {int(dim)} is out of range for a tensor of shape {x.shape} ({expected})"
        )
    return int(dim) % ndim


def float_input(op: OpDef, x: Tensor) -> OpDef:
    """`op`, after checking that x is a float Tensor (TypeError naming the op otherwise)."""
    if x.data.dtype.kind != "f":
        raise TypeError(f"{op.name}: expected a floating-point Tensor, got dtype {x.dtype}")
    return op


def matmul(a: Any, b: Any) -> Tensor:
    """a @ b as torch.matmul: a [..., m, k] (or [k]) and b [k, n] is one GEMM (`matmul`); a
    batched b [..., k, n] gives `batch_matmul`, the batch dims broadcast; a 1-D b is [k, 1]."""
    a, b = operands("matmul", a, b)
    if a.ndim >= 1 and b.ndim == 2 and a.shape[-1] == b.shape[0]:
        return apply(float_input(_MATMUL, a), (a, b))
    bk = b.shape[-2] if b.ndim >= 2 else b.shape[0] if b.ndim == 1 else None
    if a.ndim < 1 or b.ndim < 1 or a.shape[-1] != bk:
        raise ValueError(
            f"matmul: cannot multiply shapes {a.shape} and {b.shape}: expected a of shape "
            "[..., m, k] or [k] and b of shape [..., k, n] or [k] with matching k"
        )
    if b.ndim == 1:  # a [..., m, k] @ b [k]: a matrix-vector product, the n axis dropped
        return matmul(a, b.reshape(b.shape[0], 1)).squeeze(-1)
    if a.ndim == 1:  # a [k] @ b [..., k, n]: a row vector per batch entry
        return matmul(a.reshape(1, a.shape[0]), b).squeeze(-2)
    try:
        np.broadcast_shapes(a.data.shape[:-2], b.data.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul: the batch dims of {a.shape} and {b.shape} do not broadcast"
        ) from None
    return apply(float_input(_BATCH_MATMUL, a), (a, b), _NO_TRANS)


def _plain_index(index: Any) -> Any:
    """An index with Tensors replaced by their arrays, for NumPy."""
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index.data if isinstance(index, Tensor) else index


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """torch.cat: `tensors` joined along `dim`; every other dim must agree."""
    ts = tuple(tensors)
    if not ts or not all(isinstance(t, Tensor) for t in ts):
        raise TypeError(f"cat: expected a non-empty sequence of Tensors, got {tensors!r}")
    first = ts[0]
    if first.ndim == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated (stack them)")
    d = dim_arg("cat", dim, first.ndim, first.shape)
    shapes = ", ".join(str(t.data.shape) for t in ts)
    for t in ts:
        if t.dtype != first.dtype:
            raise TypeError(
                f"cat: tensors have different dtypes ({', '.join(str(u.dtype) for u in ts)}); "
                "lucid does not promote implicitly, convert with .astype()"
            )
        a, b = t.data.shape, first.data.shape
        if len(a) != len(b) or any(x != y for k, (x, y) in enumerate(zip(a, b)) if k != d):
            raise ValueError(
                f"cat: tensors must have the same shape except in dim {d}, got shapes {shapes}"
            )
    return apply(_CONCAT, ts, {"axis": d})


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """torch.stack: `tensors` (of one shape) joined along a new axis `dim`."""
    ts = tuple(tensors)
    if not ts or not all(isinstance(t, Tensor) for t in ts):
        raise TypeError(f"stack: expected a non-empty sequence of Tensors, got {tensors!r}")
    if any(t.data.shape != ts[0].data.shape for t in ts):
        shapes = ", ".join(str(t.data.shape) for t in ts)
        raise ValueError(f"stack: tensors must all have the same shape, got shapes {shapes}")
    d = dim_arg("stack", dim, ts[0].ndim + 1, ts[0].shape)
    return cat([t.unsqueeze(d) for t in ts], d)


_CONCAT = OPS["concat"]
