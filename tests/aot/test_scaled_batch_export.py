"""An exported library whose output is [N*T, V] (a GPT's logits flattened as the training loss
reads them): the shape tables say -T, and a C program with no Python sizes its buffers from
them and gets eager's values at several batch sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid import Tensor, nn
from lucid.runtime.aot import export

from ._helpers import (
    ATOL,
    QUICK,
    RTOL,
    build_caller,
    eager,
    parse_outputs,
    run_caller,
    write_inputs,
)

pytestmark = pytest.mark.needs_cc
T, D, V = 6, 5, 7
BATCHES = [1, 4, 9]


class Rows(nn.Module):
    """[N, T, D] -> Linear -> [N*T, V] rows, then a log-softmax per row."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(D, V)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.log_softmax(self.fc(x).reshape(-1, V), dim=1)


def test_c_caller_sizes_scaled_outputs_from_the_batch(tmp_path: Path) -> None:
    lucid.random.seed(0)
    model = Rows()
    rng = np.random.default_rng(0)
    example = rng.standard_normal((2, T, D)).astype(np.float32)
    result = export(model, (example,), tmp_path / "rows", flags=QUICK)
    assert f"output 0: float[batch*{T}, {V}]" in result.header.read_text()
    xs = [rng.standard_normal((b, T, D)).astype(np.float32) for b in BATCHES]
    write_inputs(tmp_path / "inputs.bin", [[x] for x in xs])
    exe = build_caller(result, tmp_path)
    stdout = run_caller([str(exe), str(tmp_path / "inputs.bin"), *map(str, BATCHES)])
    assert f"input 0 x 0 -1,{T},{D}" in stdout and f"output 0 output0 0 -{T},{V}" in stdout
    outs = parse_outputs(stdout)
    for b, x in zip(BATCHES, xs):
        want = eager(model, x)
        assert want.shape == (b * T, V) and outs[(b, 0)].size == want.size
        np.testing.assert_allclose(outs[(b, 0)].reshape(want.shape), want, rtol=RTOL, atol=ATOL)
