"""The walk of `Tensor.backward` over the autograd tape: the order and the chain shortcut.

`topological_order` lists the tensors reachable from a root through grad-requiring parents,
inputs before users. A tape that is a chain (at most one grad-requiring parent per node, as in
loss <- sum <- compiled model output, the usual training step) is its own order and is walked
by `backward_chain` without the set, stack and cotangent dict of the general walk, which are
most of a tiny tape's backward. `ones_like` and `scalar_one` make the seed the walk starts from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lucid.tensor import Tensor

Array = np.ndarray


def topological_order(root: Tensor) -> list[Tensor]:
    """Tensors reachable from root through grad-requiring parents, inputs before users."""
    chain = chain_of(root)
    return chain[::-1] if chain is not None else general_order(root)


def chain_of(root: Tensor) -> list[Tensor] | None:
    """The tape from root (root first) when it is a chain, else None.

    A chain has at most one grad-requiring parent per node (loss <- sum <- model output, the
    usual training step): it is its own order, so the set, stack and cotangent dict of the
    general walk, most of a tiny tape's backward, are not needed.
    """
    chain: list[Tensor] = []
    node = root
    while True:
        chain.append(node)
        following = None
        for parent in node._parents:
            if parent.requires_grad:
                if following is not None:
                    return None
                following = parent
        if following is None:
            return chain
        node = following


def store_grad(node: Tensor, g: Array) -> None:
    """Accumulate cotangent g into node.grad, which always ends up a fresh ndarray.

    The first store copies (g may alias another tensor's data or cotangent); later stores add.
    NumPy returns a scalar, not an array, for 0-d operands, so 0-d results are re-wrapped.
    """
    total = np.array(g) if node.grad is None else node.grad + g
    node.grad = total if type(total) is np.ndarray else np.asarray(total)


def backward_chain(chain: list[Tensor], g: Array) -> None:
    """`Tensor.backward`'s walk over a chain: each cotangent goes to the one next node."""
    for node in chain:
        backward = node._backward
        if backward is None or node.keep_grad:
            store_grad(node, g)
        if backward is None:
            return
        following = None
        for parent, pg in zip(node._parents, backward(g)):
            if pg is None or not parent.requires_grad:
                continue
            if pg.shape != parent.data.shape:  # an op's rule is wrong: fail loudly, here
                raise bad_cotangent(pg, parent)
            following = pg  # the chain's next node: the only parent requiring grad
        if following is None:
            return
        g = following


def bad_cotangent(pg: Array, parent: Tensor) -> RuntimeError:
    """The error for an op rule that returned a cotangent of the wrong shape."""
    return RuntimeError(
        f"internal error: cotangent of shape {pg.shape} for an input of shape {parent.data.shape}"
    )


def general_order(root: Tensor) -> list[Tensor]:
    """`topological_order` of any graph: a depth-first walk with an explicit stack."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for parent in node._parents:
            if parent.requires_grad and id(parent) not in seen:
                stack.append((parent, False))
    return order


def ones_like(a: Array) -> Array:
    """np.ones_like(a) at half its cost (a step's backward at batch 1)."""
    seed = np.empty_like(a)
    seed.fill(1)
    return seed


_SCALAR_ONES: dict[np.dtype, Array] = {}


def scalar_one(dtype: np.dtype) -> Array:
    """The ones-seed of a 0-d tensor (a scalar loss): one shared read-only array per dtype.

    The tape never writes into a cotangent (stores copy it, sums make new arrays); read-only
    makes a rule that tried fail loudly instead of corrupting later seeds.
    """
    seed = _SCALAR_ONES.get(dtype)
    if seed is None:
        seed = ones_like(np.empty((), dtype))
        seed.flags.writeable = False
        seed = _SCALAR_ONES.setdefault(dtype, seed)
    return seed
