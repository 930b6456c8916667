"""The workloads of the benchmark suite: shapes, lucid's initial weights, inputs and FLOP counts.

Every system is fed the arrays made here, so all of them start from the same weights (lucid's
own initialisation under `lucid.random.seed(0)`) and see the same inputs and targets. The
issue-15 models (MobileNetV3-Small, the character GPT) are `kind="model"` workloads; their
builders and data live in model_workloads.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# One plain SGD step (no momentum) after every backward, in every system: lr is small so that
# thousands of timed steps neither diverge nor reach denormal-sized gradients.
LR = 1e-3


@dataclass(frozen=True)
class Workload:
    """An MLP (Linear layers with HardSwish between them) at one batch size, a plain GEMM, or
    one of the reference models (`kind="model"`, `model` "mnv3" or "gpt")."""

    name: str
    title: str
    # MLP: features in, hidden..., out; GEMM: (M, K, N); mnv3: image (C, H, W);
    # gpt: (vocab, block_size, n_layer, n_head, n_embd), the input is batch x block_size ids
    sizes: tuple[int, ...]
    batch: int
    kind: str = "mlp"  # "mlp", "gemm" or "model"
    modes: tuple[str, ...] = ("forward", "train")
    model: str = ""
    group: str = field(default="", compare=False)  # --only name selecting several workloads

    @property
    def layers(self) -> list[tuple[int, int]]:
        """(in_features, out_features) of each Linear."""
        return list(zip(self.sizes[:-1], self.sizes[1:]))

    def forward_flops(self) -> float | None:
        """Multiply-adds x 2 of the matrix products (the elementwise work is negligible);
        None for the models (their rows show no GFLOP/s)."""
        if self.kind == "model":
            return None
        if self.kind == "gemm":
            m, k, n = self.sizes
            return 2.0 * m * k * n
        return sum(2.0 * self.batch * i * o for i, o in self.layers)

    def train_flops(self) -> float | None:
        """Forward + weight gradients + input gradients (none for the first layer's input)."""
        if self.kind == "model":
            return None
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
        Workload(
            "gemm",
            "GEMM 1024x1024x1024 f32",
            (1024, 1024, 1024),
            1024,
            kind="gemm",
            modes=("forward",),
        ),
        Workload(
            "mnv3-b1",
            "MobileNetV3-Small 224x224, batch 1",
            (3, 224, 224),
            1,
            kind="model",
            modes=("forward",),
            model="mnv3",
            group="mnv3",
        ),
        Workload(
            "mnv3-b32",
            "MobileNetV3-Small 224x224, batch 32",
            (3, 224, 224),
            32,
            kind="model",
            modes=("forward", "train"),
            model="mnv3",
            group="mnv3",
        ),
        Workload(
            "gpt",
            "GPT vocab 65, block 64, 4 layers, 4 heads, 128 embd; batch 16x64",
            (65, 64, 4, 4, 128),
            16,
            kind="model",
            model="gpt",
            group="gpt",
        ),
    )
}

# --tiny: the same code paths on small shapes (the CI smoke test; the numbers mean nothing)
TINY: dict[str, Workload] = {
    "mnv3-b1": replace(
        WORKLOADS["mnv3-b1"], title="MobileNetV3-Small 32x32, batch 1 (tiny)", sizes=(3, 32, 32)
    ),
    "mnv3-b32": replace(
        WORKLOADS["mnv3-b32"],
        title="MobileNetV3-Small 32x32, batch 2 (tiny)",
        sizes=(3, 32, 32),
        batch=2,
    ),
    "gpt": replace(
        WORKLOADS["gpt"],
        title="GPT 1 layer, 2 heads, 32 embd, batch 2x16 (tiny)",
        sizes=(65, 16, 1, 2, 32),
        batch=2,
    ),
}


def select(only: str, tiny: bool = False) -> tuple[list[Workload], list[str]]:
    """The workloads `--only` names (a name or a group such as `mnv3`; all when empty), and the
    names that match nothing."""
    names = [n for n in only.split(",") if n]
    chosen: list[Workload] = []
    unknown: list[str] = []
    for n in names or list(WORKLOADS):
        found = [w for w in WORKLOADS.values() if n in (w.name, w.group)]
        if not found:
            unknown.append(n)
        chosen += [w for w in found if w not in chosen]
    return [TINY.get(w.name, w) if tiny else w for w in chosen], unknown


@dataclass
class Data:
    """The arrays of one workload: MLP weights [(W [out, in], b [out]), ...], input and target,
    for a GEMM the two operands as x and b_matrix, for a model its lucid state dict (parameters
    and buffers by name), input and class targets (int64)."""

    weights: list[tuple[np.ndarray, np.ndarray]]
    x: np.ndarray
    target: np.ndarray | None
    b_matrix: np.ndarray | None = None
    state: dict[str, np.ndarray] | None = None
    param_names: list[str] | None = None  # the model's parameters, in lucid's order

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
    if w.kind == "model":
        from model_workloads import make_model_data

        return make_model_data(w)
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
