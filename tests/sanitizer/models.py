"""Sanitized cases for the two flagship models and for exported libraries (see cases.py).

MobileNetV3-Small at 32x32 and a tiny GPT, compiled (inference, forward and backward, SGD
steps against an eager twin) at a static and a dynamic batch; then `lucid.export` libraries
built with the sanitizers and driven two ways: through the Python loader in this process, and
by tests/aot/c_caller.c, a C program linked with the sanitizer runtimes that also calls the
library from two threads at once."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import lucid
import lucid.optim
from lucid import nn
from lucid.errors import LucidError
from lucid.models import mobilenet_v3_small
from lucid.models.gpt import GPT, GPTConfig, LossModule
from lucid.nn import functional as F
from lucid.runtime.loader import load
from tests.aot._helpers import build_caller, parse_outputs, run_caller, write_inputs
from tests.runtime.test_normalization_compiled import Vision
from tests.sanitizer._check import check_module, close, compiled, export, random
from tests.sanitizer._san import SANITIZE

SIDE = 32  # MobileNetV3's smallest input: five stride-2 stages leave a 1x1 plane
CFG = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)


def _mobilenet(seed: int = 0) -> nn.Module:
    """MobileNetV3-Small for 10 classes with non-trivial running statistics."""
    lucid.random.seed(seed)
    model = mobilenet_v3_small(num_classes=10)
    rng = np.random.default_rng(seed + 1)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.data[...] = rng.normal(0, 0.1, buf.shape)
        elif name.endswith("running_var"):
            buf.data[...] = rng.uniform(0.5, 1.5, buf.shape)
    return model


def _images(n: int, seed: int = 0) -> np.ndarray:
    return random((n, 3, SIDE, SIDE), seed=seed)


def _sgd_steps(make: Any, inputs: list[np.ndarray], loss: Any, dynamic: bool = True) -> None:
    """Two SGD steps from the same start, eager and compiled: equal losses and weights."""
    runs = []
    for use_compiled in (False, True):
        model = make()
        run = compiled(model, dynamic) if use_compiled else model
        opt = lucid.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        losses = []
        for step in range(2):
            opt.zero_grad()
            lucid.random.seed(100 + step)  # the same dropout masks in both runs
            value = loss(run, *(lucid.Tensor(a) for a in inputs))
            value.backward()
            opt.step()
            losses.append(float(value.numpy()))
        runs.append((losses, model.state_dict()))
    dtype = next(iter(runs[0][1].values())).dtype
    close(np.array(runs[1][0]), np.array(runs[0][0]), dtype, "losses")
    for k, v in runs[0][1].items():
        close(runs[1][1][k], v, v.dtype if v.dtype.kind == "f" else dtype, k)


def mobilenet() -> str:
    """Training mode (batch statistics, dropout, running-stat write-back) in float64, forward
    and backward, and eval-mode inference in float32, static and dynamic batch; two compiled
    SGD steps (float64) follow eager. Training is checked in float64: at 32x32 the last stages
    batch-normalize over a handful of values per channel, which turns float32 rounding into
    gradient differences of 1e-3 (relative) however right the kernels are."""
    model = _mobilenet().double().train()
    calls = check_module(model, lambda n: [_images(n, n).astype(np.float64)], seed=7)
    calls += check_module(_mobilenet().eval(), lambda n: [_images(n, n)], grad=False)
    data = [_images(3, 9).astype(np.float64), np.array([1, 7, 3])]
    _sgd_steps(lambda: _mobilenet().double().train(), data, _classify)
    return f"{calls} calls, 2 SGD steps"


def _classify(run: Any, x: Any, t: Any) -> Any:
    return F.cross_entropy(run(x), t)


def _gpt(seed: int = 0, dropout: float = 0.0) -> GPT:
    lucid.random.seed(seed)
    return GPT(GPTConfig(**{**CFG.__dict__, "dropout": dropout}))


def _tokens(n: int, seed: int = 0, t: int = CFG.block_size) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, CFG.vocab_size, (n, t))


def gpt() -> str:
    """Logits forward and backward (eval: embedding, causal SDPA, LayerNorm, GELU) at a static
    and a dynamic batch; the training loss with dropout 0.1 (LossModule, + cross-entropy) at a
    static batch, and two compiled SGD steps of it follow eager. (GPT.loss flattens [N, T] to
    [N*T], a reshape lucid cannot trace with a symbolic N: no dynamic batch for the loss.)"""
    calls = check_module(_gpt().eval(), lambda n: [_tokens(n, n)])
    lossy = LossModule(_gpt(dropout=0.1)).train()
    inputs = lambda n: [_tokens(n, n), _tokens(n, n + 50)]
    calls += check_module(lossy, inputs, seed=3, dynamic=(False,))
    make = lambda: LossModule(_gpt(dropout=0.1)).train()
    _sgd_steps(make, inputs(3), lambda run, *a: run(*a), dynamic=False)
    return f"{calls} calls, 2 SGD steps"


class NormModel(nn.Module):
    """Vision (BatchNorm2d, GroupNorm, BatchNorm1d) then LayerNorm(6); LayerNorm(300), the
    moments kernel's chunked path, beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.v = Vision()
        self.ln = nn.LayerNorm(6)
        self.big = nn.LayerNorm(300)

    def forward(self, x: Any) -> Any:
        wide = lucid.cat([x.reshape(-1, 75)] * 4, 1)
        return self.ln(self.v(x)).sum(1, keepdims=True) + self.big(wide).sum(1, keepdims=True)


def _from_c(model: nn.Module, example: np.ndarray, batches: list[int], out: Path) -> int:
    """Export `model`, run the library from the sanitized C caller (each batch, then the
    first from two threads at once) and from the Python loader; both against eager."""
    result = export(model, [example], out / type(model).__name__)
    assert SANITIZE in result.command
    exe = build_caller(result, out, extra=(SANITIZE, "-fno-sanitize-recover=all"))
    data = [[random((n, *example.shape[1:]), seed=n)] for n in batches]
    write_inputs(out / "in.bin", data)
    got = parse_outputs(
        run_caller([str(exe), str(out / "in.bin"), "--threads", *map(str, batches)])
    )
    lib = load(result.library)
    with lucid.no_grad():
        for n, (x,) in zip(batches, data, strict=True):
            want = model(lucid.Tensor(x)).numpy()
            close(got[(n, 0)].reshape(want.shape), want, np.float32, f"C caller, batch {n}")
            close(lib(x), want, np.float32, f"Python loader, batch {n}")
    return 2 * len(batches)


def exports() -> str:
    """Exported libraries under the sanitizers: MobileNetV3-Small and the normalization model
    from C and from Python; the GPT from Python, with an out-of-range token refused."""
    out = Path(tempfile.mkdtemp(prefix="lucid-san-export-"))
    calls = _from_c(_mobilenet().eval(), _images(2), [1, 3], out)
    norm = NormModel()
    for _ in range(2):  # running statistics away from their initial values
        norm(lucid.Tensor(random((5, 3, 5, 5), seed=9)))
    calls += _from_c(norm.eval(), random((3, 3, 5, 5)), [1, 4, 7], out)
    model = _gpt().eval()
    lib = load(export(model, [_tokens(2)], out / "gpt").library)
    with lucid.no_grad():
        for n, t in ((1, 8), (3, 8)):
            idx = _tokens(n, 20 + n, t)
            close(lib(idx), model(lucid.Tensor(idx)).numpy(), np.float32, f"GPT batch {n}")
            calls += 1
    bad = _tokens(2)
    bad[1, 5] = CFG.vocab_size
    try:
        lib(bad)
    except LucidError as e:
        assert "embedding: an index is out of range" in str(e), e
    else:
        raise AssertionError("the exported GPT ran an out-of-range token")
    return f"{calls + 1} library calls"
