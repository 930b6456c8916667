"""The workloads of the benchmark suite: shapes, lucid's initial weights, inputs and FLOP counts.

Every system is fed the arrays made here, so all of them start from the same weights (lucid's
own initialisation under `lucid.random.seed(0)`) and see the same inputs and targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# One plain SGD step (no momentum) after every backward, in every system: lr is small so that
# thousands of timed steps neither diverge nor reach denormal-sized gradients.
LR = 1e-3


@dataclass(frozen=True)
class Workload:
    """An MLP (Linear layers with HardSwish between them) at one batch size, or a plain GEMM."""

    name: str
    title: str
    sizes: tuple[int, ...]  # MLP: features in, hidden..., out; GEMM: (M, K, N)
    batch: int
    kind: str = "mlp"  # "mlp" or "gemm"

    @property
    def layers(self) -> list[tuple[int, int]]:
        """(in_features, out_features) of each Linear."""
        return list(zip(self.sizes[:-1], self.sizes[1:]))

    def forward_flops(self) -> float:
        """Multiply-adds x 2 of the matrix products (the elementwise work is negligible)."""
        if self.kind == "gemm":
            m, k, n = self.sizes
            return 2.0 * m * k * n
        return sum(2.0 * self.batch * i * o for i, o in self.layers)

    def train_flops(self) -> float:
        """Forward + weight gradients + input gradients (none for the first layer's input)."""
        per_layer = [2.0 * self.batch * i * o for i, o in self.layers]
        return 3 * sum(per_layer) - per_layer[0]


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("seed", "seed Linear(3,5)-HardSwish-Linear(5,2), batch 1", (3, 5, 2), 1),
        Workload(
            "wide",
            "Linear(1024,1024)-HardSwish-Linear(1024,1024), batch 256",
            (1024, 1024, 1024),
            256,
        ),
        Workload("deep", "784-2048-2048-10 with HardSwish, batch 512", (784, 2048, 2048, 10), 512),
        Workload("gemm", "GEMM 1024x1024x1024 f32", (1024, 1024, 1024), 1024, kind="gemm"),
    )
}


@dataclass
class Data:
    """The arrays of one workload: MLP weights [(W [out, in], b [out]), ...], input and target,
    or for a GEMM the two operands as x and b_matrix."""

    weights: list[tuple[np.ndarray, np.ndarray]]
    x: np.ndarray
    target: np.ndarray | None
    b_matrix: np.ndarray | None = None

    def weights_copy(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """A private copy for a system that updates weights in place."""
        return [(w.copy(), b.copy()) for w, b in self.weights]


def lucid_mlp(w: Workload):
    """The lucid model of an MLP workload, initialised by lucid itself (seeded)."""
    import lucid
    from lucid import nn

    lucid.random.seed(0)
    mods = []
    for j, (i, o) in enumerate(w.layers):
        if j:
            mods.append(nn.HardSwish())
        mods.append(nn.Linear(i, o))
    return nn.Sequential(*mods)


def lucid_matmul():
    """`a @ b` of its two inputs as a lucid Module, for the GEMM workload."""
    from lucid import nn

    class MatMul(nn.Module):
        def forward(self, a, b):
            return a @ b

    return MatMul()


def make_data(w: Workload) -> Data:
    """Weights (lucid's initialisation), input and regression target of a workload."""
    rng = np.random.default_rng(0)
    if w.kind == "gemm":
        m, k, n = w.sizes
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        return Data([], a, None, b)
    model = lucid_mlp(w)
    linears = [m for m in model.modules() if hasattr(m, "weight")]
    weights = [(m.weight.data.copy(), m.bias.data.copy()) for m in linears]
    x = rng.standard_normal((w.batch, w.sizes[0])).astype(np.float32)
    target = rng.standard_normal((w.batch, w.sizes[-1])).astype(np.float32)
    return Data(weights, x, target)


def load_into_lucid(model, weights: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Copy weights into a lucid MLP (each Linear in order)."""
    linears = [m for m in model.modules() if hasattr(m, "weight")]
    for m, (wt, b) in zip(linears, weights, strict=True):
        m.weight.data[...] = wt
        m.bias.data[...] = b
