"""ASan run of an exported library with normalization layers, driven by tests/aot/c_caller.c.

Not a pytest file (a sanitizer build and a C program; run it by hand):
    ASAN_OPTIONS=detect_leaks=0 PYTHONPATH=. LUCID_CACHE_DIR=$(mktemp -d) \\
        python tests/aot/asan_normalization_export.py
The library and the caller are built with -fsanitize=address; batches 1, 4 and 7, and the
caller's two-thread check. LayerNorm(300) takes the moments kernel's chunked path.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import lucid
from lucid import nn
from tests.aot._helpers import build_caller, parse_outputs, run_caller, write_inputs
from tests.runtime.test_normalization_compiled import Vision

ASAN = ("-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer", "-ffp-contract=off")


class Model(nn.Module):
    """Vision (BatchNorm2d, GroupNorm, BatchNorm1d) then LayerNorm(6); LayerNorm(300) beside."""

    def __init__(self) -> None:
        super().__init__()
        self.v = Vision()
        self.ln = nn.LayerNorm(6)
        self.big = nn.LayerNorm(300)

    def forward(self, x: Any) -> Any:
        wide = lucid.cat([x.reshape(-1, 75)] * 4, 1)
        return self.ln(self.v(x)).sum(1, keepdims=True) + self.big(wide).sum(1, keepdims=True)


def main() -> None:
    out = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    model = Model()
    for _ in range(2):  # running statistics away from their initial values
        model(lucid.tensor(rng.standard_normal((5, 3, 5, 5)).astype(np.float32)))
    model.eval()
    x = rng.standard_normal((3, 3, 5, 5)).astype(np.float32)
    result = lucid.export(model, (x,), out / "m", name="m", flags=ASAN, march="native")
    exe = build_caller(result, out, extra=("-fsanitize=address",))
    batches = [1, 4, 7]
    data = [[rng.standard_normal((n, 3, 5, 5)).astype(np.float32)] for n in batches]
    write_inputs(out / "in.bin", data)
    got = parse_outputs(
        run_caller([str(exe), str(out / "in.bin"), "--threads", *map(str, batches)])
    )
    with lucid.no_grad():
        for n, (arr,) in zip(batches, data):
            want = model(lucid.tensor(arr)).data
            np.testing.assert_allclose(got[(n, 0)].reshape(want.shape), want, rtol=2e-5, atol=2e-5)
    print("exported library under ASan: ok")


if __name__ == "__main__":
    main()
