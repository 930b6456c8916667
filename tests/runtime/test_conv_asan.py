"""Every conv C path (im2col + GEMM with padding, stride, dilation and groups; 1x1 direct;
depthwise plane-wide and strided, with a channel multiplier; both gradients) built with
AddressSanitizer, run forward and backward at static and dynamic batch sizes, and on 2 threads
with tasks split between them, in a child Python
that preloads libasan, and compared with eager lucid. Slow: the builds are unoptimised."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.needs_cc]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = r"""
import numpy as np, lucid
from lucid import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)                          # im2col + GEMM
        self.b = nn.Conv2d(8, 16, 5, stride=2, padding=2, groups=8)               # depthwise x2, strided
        self.c = nn.Conv2d(16, 16, 3, padding=(0, 3), dilation=(1, 3), groups=16)  # depthwise, plane
        self.d = nn.Conv2d(16, 8, 1)                                              # 1x1: x itself
        self.e = nn.Conv2d(8, 6, (2, 3), stride=(1, 2), padding="valid", groups=2)
        self.f = nn.Conv2d(6, 4, 4, padding="same")                               # asymmetric pads

    def forward(self, x):
        h = self.a(x).relu()
        h = nn.functional.hardswish(self.b(h))
        h = self.c(h) + 0.5
        return self.f(self.e(self.d(h).relu()))

FLAGS = ["-O1", "-march=native", "-g", "-fsanitize=address", "-fno-omit-frame-pointer",
         "-ffp-contract=off", "-fno-math-errno"]
lucid.random.seed(0)
m = Net()
for dynamic in (False, True):
    cm = lucid.compile(m, dynamic_batch=dynamic, options={"cflags": FLAGS})
    for n in (1, 3, 8) if dynamic else (2,):
        x = np.random.default_rng(n).standard_normal((n, 3, 17, 15)).astype(np.float32)
        with lucid.no_grad():
            np.testing.assert_allclose(cm(lucid.Tensor(x)).data, m(lucid.Tensor(x)).data,
                                       rtol=1e-5, atol=1e-5)
        grads = []
        for fn in (m, cm):
            for p in m.parameters():
                p.grad = None
            xt = lucid.Tensor(x, requires_grad=True)
            (fn(xt) ** 2).sum().backward()
            grads.append([p.grad.copy() for p in m.parameters()] + [xt.grad.copy()])
        for a, b in zip(*grads):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
# big enough that 2 threads split the (image, group) tasks and the depthwise planes
lucid.set_num_threads(2)
big = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.Conv2d(32, 32, 3, padding=1, groups=32),
                    nn.Conv2d(32, 64, 1))
cb = lucid.compile(big, options={"cflags": FLAGS})
x = np.random.default_rng(0).standard_normal((8, 3, 128, 128)).astype(np.float32)
xt = lucid.Tensor(x, requires_grad=True)
(cb(xt) ** 2).sum().backward()
with lucid.no_grad():
    np.testing.assert_allclose(cb(lucid.Tensor(x)).data, big(lucid.Tensor(x)).data, rtol=1e-4, atol=1e-4)
print("conv asan: all paths clean")
"""


def test_conv_kernels_are_clean_under_address_sanitizer(tmp_path: Path) -> None:
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("gcc not found")
    libasan = subprocess.run(
        [cc, "-print-file-name=libasan.so"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        pytest.skip("libasan is not installed")
    env = {
        **os.environ,
        "LD_PRELOAD": libasan,
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",  # Python itself leaks by design
        "LUCID_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0 and "AddressSanitizer" not in run.stderr, run.stderr[-4000:]
    assert "conv asan: all paths clean" in run.stdout
