"""Central-difference gradient checking for eager lucid ops (float64 only)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lucid import Tensor

EPS = 1e-6
ATOL = 1e-5
RTOL = 1e-3


def numerical_grad(
    f: Callable[..., np.ndarray], arrays: Sequence[np.ndarray], eps: float = EPS
) -> list[np.ndarray]:
    """d f(*arrays) / d arrays[i] for scalar-valued f, by central differences, for every i."""
    grads = []
    for arr in arrays:
        if arr.dtype != np.float64:
            raise TypeError(f"numerical_grad needs float64 inputs, got {arr.dtype}")
        g = np.zeros_like(arr)
        flat, gflat = arr.reshape(-1), g.reshape(-1)  # views: perturb arr in place
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            hi = float(f(*arrays))
            flat[i] = orig - eps
            lo = float(f(*arrays))
            flat[i] = orig
            gflat[i] = (hi - lo) / (2 * eps)
        grads.append(g)
    return grads


def check_grads(
    op: Callable[..., Tensor], *arrays: np.ndarray, seed: int = 0, const: Sequence[int] = ()
) -> None:
    """Assert that op's backward matches central differences for every non-constant input.

    The op's output is contracted with a fixed random cotangent w, so the check covers every
    output element and not only their sum. Inputs at positions in `const` get no gradient.
    """
    arrays = tuple(np.array(a, dtype=np.float64) for a in arrays)
    tensors = [Tensor(a, requires_grad=i not in const) for i, a in enumerate(arrays)]
    out = op(*tensors)
    w = np.random.default_rng(seed).uniform(0.5, 1.5, out.shape)
    out.backward(w)

    def scalar(*xs: np.ndarray) -> float:
        return float((op(*[Tensor(x) for x in xs]).data * w).sum())

    expected = numerical_grad(scalar, [a.copy() for a in arrays])
    for i, (t, g) in enumerate(zip(tensors, expected)):
        if i in const:
            assert t.grad is None
            continue
        assert t.grad is not None, f"input {i} received no gradient"
        assert t.grad.shape == t.shape and t.grad.dtype == np.float64
        np.testing.assert_allclose(t.grad, g, rtol=RTOL, atol=ATOL, err_msg=f"input {i}")
