"""The kernels of scaled batch dims (N*8 rows: the GPT's flattened logits and cross-entropy,
GEMMs with M = 8N, a softmax over [N*4, 30] rows, a conv whose output is read as [N*C, H*W])
built with AddressSanitizer, run forward and backward at several dynamic batch sizes and on
2 threads, compiled and exported, in a child Python that preloads libasan, and compared with
eager lucid. Slow: the builds are unoptimised."""

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
import tempfile
from pathlib import Path
import numpy as np, lucid
from lucid.models.gpt import GPT, GPTConfig, LossModule
from lucid.runtime.loader import load
from tests.runtime.test_scaled_batch_compiled import ConvFlat, _loss, _run, _x
from tests.zoo.test_gpt_dynamic_loss import _FlatLogits

FLAGS = ["-O1", "-march=native", "-g", "-fsanitize=address", "-fno-omit-frame-pointer",
         "-ffp-contract=off", "-fno-math-errno"]
OPTS = {"cflags": FLAGS}

def close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

lucid.random.seed(0)
cfg = GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16)
gpt = GPT(cfg)
step = lucid.compile(LossModule(gpt), dynamic_batch=True, options=OPTS)
conv = ConvFlat()
cconv = lucid.compile(conv, dynamic_batch=True, options=OPTS)
for threads in (1, 2):
    lucid.set_num_threads(threads)
    for n in (1, 3, 6):
        rng = np.random.default_rng(n)
        idx, tg = rng.integers(0, 13, (n, 8)), rng.integers(0, 13, (n, 8))
        grads = []
        for fn in (LossModule(gpt), step):
            for p in gpt.parameters():
                p.grad = None
            loss = fn(lucid.Tensor(idx), lucid.Tensor(tg))
            loss.backward()
            grads.append([float(loss.data)] + [p.grad.copy() for p in gpt.parameters()])
        for a, b in zip(*grads):
            close(a, b)
        for a, b in zip(_run(conv, conv, _x(n, seed=n)), _run(cconv, conv, _x(n, seed=n))):
            close(b, a)
assert len(step.signatures) == 1 and len(cconv.signatures) == 1
out = Path(tempfile.mkdtemp())
example = np.zeros((2, 8), np.int64)
lib = load(lucid.export(_FlatLogits(gpt), (example,), out / "flat", flags=FLAGS).library)
for n in (1, 5):
    idx = np.random.default_rng(n).integers(0, 13, (n, 8))
    with lucid.no_grad():
        close(lib(idx), _FlatLogits(gpt)(lucid.Tensor(idx)).data)
print("scaled batch asan: all paths clean")
"""


def test_scaled_batch_kernels_are_clean_under_address_sanitizer(tmp_path: Path) -> None:
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
        cwd=ROOT,
        timeout=1200,
        check=False,
    )
    assert run.returncode == 0 and "AddressSanitizer" not in run.stderr, run.stderr[-4000:]
    assert "scaled batch asan: all paths clean" in run.stdout
