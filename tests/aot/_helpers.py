"""Shared by the AOT tests: models, the C caller's build and run, and parsing what it prints."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import numpy as np

import lucid
import lucid.nn.functional as F
from lucid import nn
from lucid.runtime.aot import ExportResult

HERE = Path(__file__).parent
CC = shutil.which("gcc") or shutil.which("cc")
RTOL, ATOL = 1.3e-6, 1e-5  # float32 vs eager lucid (GEMMs may sum in another order)
# For tests about structure rather than speed: a third of -O3's compile time, same numerics.
QUICK = ("-O1", "-ffp-contract=off", "-fno-math-errno")


def random_mlp(rng: np.random.Generator) -> tuple[nn.Module, int]:
    """A random-depth, random-width MLP with a mix of activations; returns (model, in_dim)."""
    acts = [nn.HardSwish, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.ReLU6]
    widths = [int(w) for w in rng.integers(1, 40, size=int(rng.integers(2, 5)))]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), acts[int(rng.integers(len(acts)))]()]
    return nn.Sequential(*layers), widths[0]


class CrossEntropyModel(nn.Module):
    """Logits from a Linear, then the cross-entropy against integer targets (two inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: lucid.Tensor, target: lucid.Tensor) -> lucid.Tensor:
        return F.cross_entropy(self.fc(x), target, reduction="sum")


def eager(model: nn.Module, *arrays: np.ndarray) -> np.ndarray:
    """The eager result of model on arrays, as NumPy."""
    with lucid.no_grad():
        return model(*(lucid.tensor(a) for a in arrays)).data


def build_caller(result: ExportResult, out_dir: Path, *, extra: tuple[str, ...] = ()) -> Path:
    """Compile tests/aot/c_caller.c against the exported library (no Python at run time)."""
    exe = out_dir / f"caller_{result.name}"
    has_run = ("-DHAS_RUN",) if result.weights is None else ()
    cmd = [
        CC,
        "-std=c99",
        "-D_POSIX_C_SOURCE=200809L",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-g",
        "-O1",
        f"-DMODEL={result.name}",
        f'-DHEADER="{result.header.name}"',
        *has_run,
        *extra,
        f"-I{result.header.parent}",
        str(HERE / "c_caller.c"),
        str(result.library),
        f"-Wl,-rpath,{result.library.parent}",
        "-lpthread",
        "-o",
        str(exe),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert run.returncode == 0, f"{' '.join(cmd)}\n{run.stderr}"
    return exe


def write_inputs(path: Path, batches: list[list[np.ndarray]]) -> None:
    """The caller's INPUTS.bin: for each batch, each input's raw bytes."""
    with open(path, "wb") as f:
        for arrays in batches:
            f.writelines(np.ascontiguousarray(a).tobytes() for a in arrays)


def run_caller(argv: list[str], *, prefix: tuple[str, ...] = ()) -> str:
    """Run the caller; its stdout (the test fails with the output if any check failed)."""
    run = subprocess.run([*prefix, *argv], capture_output=True, text=True, check=False, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert "all checks passed" in run.stdout
    return run.stdout


def parse_outputs(stdout: str) -> dict[tuple[int, int], np.ndarray]:
    """{(batch, output index): values} from the caller's `out` lines (C99 hex floats)."""
    found = {}
    for line in stdout.splitlines():
        if line.startswith("out "):
            _, batch, j, *vals = line.split()
            found[(int(batch), int(j))] = np.array([float.fromhex(v) for v in vals])
    return found


def return_codes(stdout: str) -> dict[int, int]:
    """{batch: return code} from the caller's `rc` lines."""
    return {
        int(ln.split()[1]): int(ln.split()[2]) for ln in stdout.splitlines() if ln.startswith("rc ")
    }
