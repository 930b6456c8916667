"""Tensor and its autograd tape.

A Tensor wraps one NumPy array. Every op builds its result with `_result`, which (when grad mode
is on and an input requires grad) remembers the inputs and a closure mapping the output's
cotangent to the inputs' cotangents, and reports the op to the tracer seam (`lucid._hooks`).
`Tensor.backward` walks that tape in reverse topological order with an explicit stack, so graph
depth is bounded by memory, not by Python's recursion limit.

The ops themselves live in `lucid/_eager_math.py`, `_eager_nn.py` and `_eager_shape.py`; the
methods here only delegate to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from lucid import _hooks
from lucid._tape import _backward_chain, _bad_cotangent, _chain, _general_order, store_grad

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

    __array_ufunc__ = None  # make `ndarray + Tensor` call Tensor.__radd__, not loop elementwise
    __hash__ = object.__hash__  # __eq__ builds a Tensor, so identity hashing must be explicit

    def __init__(
        self, data: Any, requires_grad: bool = False, keep_grad: bool = False, dtype: Any = None
    ) -> None:
        self.data: Array = _as_array(data, dtype)
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

    # ------------------------------------------------------------ plain attributes

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of `data`."""
        return self.data.shape

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return self.data.ndim

    @property
    def size(self) -> int:
        """The number of elements."""
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
        return _shape.getitem(self, index)

    def __setitem__(self, index: Any, value: Any) -> None:
        _shape.setitem(self, index, value)

    # ------------------------------------------------------------ autograd

    def backward(self, grad: Any = None) -> None:
        """Accumulate d(self)/d(leaf) * grad into every leaf's `.grad`; grad defaults to ones."""
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a Tensor that does not require grad: no input of the ops that "
                "produced it had requires_grad=True (or it was computed under lucid.no_grad())"
            )
        if grad is None:  # lucid semantics: any shape seeds with ones
            seed = _scalar_one(self.data.dtype) if self.data.ndim == 0 else _ones_like(self.data)
        else:
            seed = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if seed.shape != self.shape:
                raise ValueError(
                    f"backward: grad has shape {seed.shape}, expected the tensor's shape {self.shape}"
                )
        chain = _chain(self)
        if chain is not None:
            _backward_chain(chain, seed)
            return
        grads: dict[int, Array] = {id(self): seed}
        for node in reversed(_general_order(self)):
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
                    raise _bad_cotangent(pg, parent)
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg

    # ------------------------------------------------------------ arithmetic

    def __add__(self, other: Any) -> Tensor:
        return _math.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _math.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _math.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _math.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _math.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _math.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _math.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _math.div(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _nn.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _nn.matmul(other, self)

    def __neg__(self) -> Tensor:
        return _math.neg(self)

    def __pow__(self, exponent: Any) -> Tensor:
        return _math.pow(self, exponent)

    def __abs__(self) -> Tensor:
        return _math.abs(self)

    def __lt__(self, other: Any) -> Tensor:
        return _math.compare("less", self, other)

    def __le__(self, other: Any) -> Tensor:
        return _math.compare("less_equal", self, other)

    def __gt__(self, other: Any) -> Tensor:
        return _math.compare("greater", self, other)

    def __ge__(self, other: Any) -> Tensor:
        return _math.compare("greater_equal", self, other)

    def __eq__(self, other: object) -> Tensor:  # type: ignore[override]
        return _math.compare("equal", self, other)

    def __ne__(self, other: object) -> Tensor:  # type: ignore[override]
        return _math.compare("not_equal", self, other)

    # ------------------------------------------------------------ methods

    def exp(self) -> Tensor:
        """Elementwise e**x."""
        return _math.exp(self)

    def log(self) -> Tensor:
        """Elementwise natural logarithm."""
        return _math.log(self)

    def sqrt(self) -> Tensor:
        """Elementwise square root."""
        return _math.sqrt(self)

    def tanh(self) -> Tensor:
        """Elementwise tanh."""
        return _math.tanh(self)

    def abs(self) -> Tensor:
        """Elementwise absolute value."""
        return _math.abs(self)

    def sigmoid(self) -> Tensor:
        """Elementwise logistic sigmoid."""
        return _nn.sigmoid(self)

    def relu(self) -> Tensor:
        """Elementwise max(x, 0)."""
        return _nn.relu(self)

    def clip(self, min: float | None = None, max: float | None = None) -> Tensor:
        """Clamp into [min, max]; None leaves that side open."""
        return _math.clip(self, min, max)

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Sum over `axis` (all axes when None)."""
        return _shape.reduce("sum", self, axis, keepdims)

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Arithmetic mean over `axis` (all axes when None)."""
        return _shape.reduce("mean", self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        """Same data in a new shape; accepts reshape(2, 3) or reshape((2, 3)), one -1 allowed."""
        return _shape.reshape(self, *shape)

    def transpose(self, *perm: Any) -> Tensor:
        """Permute axes; no arguments reverses them."""
        return _shape.transpose(self, *perm)

    @property
    def T(self) -> Tensor:
        """The tensor with its axes reversed."""
        return _shape.transpose(self)

    def broadcast_to(self, shape: Sequence[int]) -> Tensor:
        """Broadcast to `shape` following NumPy's rules."""
        return _shape.broadcast_to(self, shape)

    def astype(self, dtype: Any) -> Tensor:
        """Cast to `dtype`; gradients flow back only between floating dtypes."""
        return _shape.astype(self, dtype)

    def detach(self) -> Tensor:
        """The same values, cut from the autograd graph (shares data)."""
        return _shape.detach(self)


def _ones_like(a: Array) -> Array:
    """np.ones_like(a) at half its cost (a step's backward at batch 1)."""
    seed = np.empty_like(a)
    seed.fill(1)
    return seed


_SCALAR_ONES: dict[np.dtype, Array] = {}


def _scalar_one(dtype: np.dtype) -> Array:
    """The ones-seed of a 0-d tensor (a scalar loss): one shared read-only array per dtype.

    The tape never writes into a cotangent (stores copy it, sums make new arrays); read-only
    makes a rule that tried fail loudly instead of corrupting later seeds.
    """
    seed = _SCALAR_ONES.get(dtype)
    if seed is None:
        seed = _ones_like(np.empty((), dtype))
        seed.flags.writeable = False
        seed = _SCALAR_ONES.setdefault(dtype, seed)
    return seed


def _result(
    data: Array,
    op: str | None,
    inputs: tuple[Tensor, ...],
    attrs: dict[str, Any],
    backward: BackwardFn | None,
) -> Tensor:
    """Wrap an op's result, attach its tape entry if needed, and report it to the tracer.

    `op=None` marks an op with no IR form (indexing, dropout): it is not recorded; the caller
    has already called `_hooks.unsupported`.
    """
    out = Tensor.__new__(Tensor)
    out.data = data
    out.grad = None
    out.keep_grad = False
    out.requires_grad = False
    out._parents = ()
    out._backward = None
    if backward is not None and _grad_enabled:
        for t in inputs:  # a loop, not any(<generator>): this runs once per eager op
            if t.requires_grad:
                out.requires_grad = True
                out._parents = inputs
                out._backward = backward
                break
    if op is not None and _hooks.active is not None:
        _hooks.record(op, inputs, attrs, out)
    return out


# The op modules import Tensor and _result from here, so they are loaded after both exist.
from lucid import _eager_math as _math
from lucid import _eager_nn as _nn
from lucid import _eager_shape as _shape
