"""The base class shared by lucid's optimizers."""

from __future__ import annotations

from collections.abc import Iterable

from lucid.nn.module import Parameter as _Parameter
from lucid.tensor import Tensor


class Optimizer:
    """Holds a fixed list of tensors to update.

    Invariants: every tensor requires grad; `step` changes `p.data` in place (the same ndarray
    object, which compiled models may hold) and bumps a Parameter's `_version`; tensors whose
    `grad` is None are skipped.
    """

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for i, p in enumerate(self.params):
            # a frozen Parameter (requires_grad_(False)) is accepted, as in PyTorch: it has no
            # grad, so step skips it until it is unfrozen
            if not isinstance(p, Tensor) or not (p.requires_grad or isinstance(p, _Parameter)):
                raise TypeError(
                    f"{type(self).__name__}: parameter {i} must be a Tensor with "
                    f"requires_grad=True, got {type(p).__name__}"
                )
        if lr < 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be >= 0, got {lr}")
        self.lr = lr

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        update = self._update
        for i, p in enumerate(self.params):
            if p.grad is not None:
                update(i, p)
                if hasattr(p, "_version"):
                    p._version += 1

    def _update(self, i: int, p: Tensor) -> None:
        raise NotImplementedError
