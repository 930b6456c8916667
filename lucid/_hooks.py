"""The one seam between eager lucid and the tracer.

Eager code calls `record` after every primitive op, `unsupported` wherever a value would
leave the graph (``bool(t)``, ``t.item()``, ``t.numpy()``...), and `rng_seed` for the seed of
a random op (Dropout in training). All are no-ops unless a tracer has installed itself as
`active`, so eager execution pays one global lookup per op.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from lucid._symbolic import SymInt
    from lucid.nn.module import Module
    from lucid.tensor import Tensor


class TraceHook(Protocol):
    """What the tracer implements; see lucid/ir/trace.py."""

    def record(
        self, op: str, inputs: Sequence[Tensor], attrs: dict[str, Any], output: Tensor
    ) -> None: ...

    def unsupported(self, what: str, inputs: Sequence[Tensor]) -> None: ...

    def rng_seed(self) -> Tensor: ...

    # forward of `module` runs between the two (Module.__call__ pairs them in a try/finally)
    def enter_module(self, module: Module) -> None: ...

    def exit_module(self) -> None: ...

    # symbolic sizes (lucid/_symbolic.py): what `x.shape` reads, and where SymInts go
    def shape(self, tensor: Tensor) -> tuple[Any, ...]: ...

    def guard(self, test: Any, outcome: bool) -> None: ...

    def bind_size(self, tensor: Tensor, size: SymInt) -> None: ...

    def bind_fill(self, tensor: Tensor, shape: tuple[Any, ...], fill: float) -> None: ...

    def random(self, what: str) -> None: ...

    def write_buffer(self, target: Tensor, value: Tensor) -> None: ...

    # a training step traced whole (lucid/ir/trace_step.py); the module tracer refuses them
    def backward(self, tensor: Tensor, grad: Any) -> None: ...

    def optimizer_step(self, optimizer: Any) -> None: ...

    def zero_grad(self, optimizer: Any) -> None: ...


active: TraceHook | None = None


def record(op: str, inputs: Sequence[Tensor], attrs: dict[str, Any], output: Tensor) -> None:
    """Tell the active tracer (if any) that `op` produced `output` from `inputs`."""
    if active is not None:
        active.record(op, inputs, attrs, output)


def unsupported(what: str, inputs: Sequence[Tensor]) -> None:
    """Tell the active tracer (if any) that an op with no IR form ran on `inputs`."""
    if active is not None:
        active.unsupported(what, inputs)


def random_source(what: str) -> None:
    """Tell the active tracer (if any) that random numbers are drawn in the traced code."""
    if active is not None:
        active.random(what)


def rng_seed() -> Tensor | None:
    """While a tracer is active, a seed Tensor it binds to a new run-time input of the graph,
    so a random op's seed is never a constant of the graph; None when eager (then the caller
    draws one from lucid.random)."""
    return active.rng_seed() if active is not None else None


def write_buffer(target: Tensor, value: Tensor) -> None:
    """Store `value` into the module buffer `target` in place (BatchNorm's running statistics).
    Eager: the data is copied now. Traced: nothing is written (the compiled call will); the
    tracer makes the new value an extra graph output that whoever runs the graph writes back,
    and later reads of `target` in the same forward see the new value."""
    if active is not None:
        active.write_buffer(target, value)
    else:
        target.data[...] = value.data


def backward(tensor: Tensor, grad: Any) -> bool:
    """While a tracer is active, tell it that `tensor.backward(grad)` was called and return
    True (the tape does not run: a traced step differentiates in the graph); False when eager."""
    if active is None:
        return False
    active.backward(tensor, grad)
    return True


def optimizer_step(optimizer: Any) -> bool:
    """While a tracer is active, tell it that `optimizer.step()` was called and return True
    (nothing is updated now: the compiled step updates); False when eager."""
    if active is None:
        return False
    active.optimizer_step(optimizer)
    return True


def zero_grad(optimizer: Any) -> bool:
    """While a tracer is active, tell it that `optimizer.zero_grad()` was called and return
    True (no `.grad` is touched now); False when eager."""
    if active is None:
        return False
    active.zero_grad(optimizer)
    return True


@contextmanager
def installed(hook: TraceHook) -> Iterator[TraceHook]:
    """Make `hook` the active tracer for the duration of the block (not reentrant)."""
    global active
    if active is not None:
        raise RuntimeError("a trace is already in progress; lucid does not trace re-entrantly")
    active = hook
    try:
        yield hook
    finally:
        active = None
