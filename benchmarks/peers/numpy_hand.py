"""NumPy by hand: the forward and backward a NumPy user would write, with no framework."""

from __future__ import annotations

import numpy as np
from workloads import LR, Data, Workload

from peers import Forward, Train, Unavailable, flat


def _hardswish(z: np.ndarray) -> np.ndarray:
    """z * clip(z / 6 + 1/2, 0, 1)."""
    return z * np.clip(z / np.float32(6) + np.float32(0.5), 0, 1)


def _hardswish_grad(z: np.ndarray) -> np.ndarray:
    """x/3 + 1/2 on [-3, 3], 1 above, 0 below."""
    return np.where(z < -3, 0, np.where(z > 3, 1, z / np.float32(3) + np.float32(0.5))).astype(
        np.float32, copy=False
    )


def _mlp_forward(weights: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> list[np.ndarray]:
    """[z1, z2, ..., y]: the pre-activations of every layer (the last one is the output)."""
    zs: list[np.ndarray] = []
    h = x
    for j, (wt, b) in enumerate(weights):
        if j:
            h = _hardswish(zs[-1])
        zs.append(h @ wt.T + b)
    return zs


class NumpyHand:
    """Hand-written NumPy (OpenBLAS GEMMs)."""

    name = "numpy by hand"

    def model(self, w: Workload, d: Data, mode: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """A private copy of the MLP's weights [(W1, b1), ...] (none for a GEMM row)."""
        if w.kind == "model":
            rows = "MLP" if mode == "train" else "MLP and GEMM"
            raise Unavailable(f"{rows} workloads only (no hand-written model)")
        return [] if w.kind == "gemm" else d.weights_copy()

    def forward(self, w: Workload, d: Data, model: list) -> Forward:
        """The layers as `h @ W.T + b` and HardSwish as clip."""
        if w.kind == "gemm":
            a, b = d.x, d.b_matrix
            return Forward(lambda: a @ b, np.asarray)
        weights, x = model, d.x
        return Forward(lambda: _mlp_forward(weights, x)[-1], np.asarray)

    def train(self, w: Workload, d: Data, model: list) -> Train:
        """Forward keeping pre-activations, MSE gradient, backward layer by layer, SGD."""
        weights, x, target = model, d.x, d.target
        assert target is not None
        scale = np.float32(2.0 / target.size)

        def step() -> float:
            zs = _mlp_forward(weights, x)
            diff = zs[-1] - target
            dz = diff * scale
            grads = []
            for j in range(len(weights) - 1, -1, -1):
                h_in = x if j == 0 else _hardswish(zs[j - 1])
                grads.append((dz.T @ h_in, dz.sum(axis=0)))
                if j:  # the input needs no gradient
                    dz = (dz @ weights[j][0]) * _hardswish_grad(zs[j - 1])
            for (wt, b), (gw, gb) in zip(weights, reversed(grads)):
                wt -= np.float32(LR) * gw
                b -= np.float32(LR) * gb
            return float(np.mean(diff * diff))

        return Train(step, lambda: flat(weights))
