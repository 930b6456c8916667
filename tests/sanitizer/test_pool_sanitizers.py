"""lucid.compile's generated C with its thread pool, under ThreadSanitizer and under
AddressSanitizer + UndefinedBehaviorSanitizer, from a C harness (tests/sanitizer/pool.py):
three caller threads at once, two pool threads each, every kernel split between threads.
Quick (about a second a case), so it runs in every CI run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid import nn
from tests.sanitizer import _san
from tests.sanitizer.pool import build_harness

SANITIZERS = {
    "tsan": (("-O1", "-fsanitize=thread"), {"TSAN_OPTIONS": "halt_on_error=1"}),
    "asan+ubsan": (
        ("-O0", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"),
        {"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "halt_on_error=1"},
    ),
}
COMMON = ("-g", "-march=native", "-fno-omit-frame-pointer", "-ffp-contract=off", "-fno-math-errno")
REPORTS = ("WARNING: ThreadSanitizer", *_san.REPORTS)


def _runtime_missing(name: str) -> str | None:
    cc = _san.gcc()
    if cc is None:
        return "gcc not found"
    libs = ["libtsan.so"] if name == "tsan" else ["libasan.so", "libubsan.so"]
    for lib in libs:
        path = subprocess.run(
            [cc, f"-print-file-name={lib}"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if not os.path.isabs(path):
            return f"gcc's {lib} is not installed"
    return None


def _models() -> dict[str, tuple[nn.Module, np.ndarray]]:
    lucid.random.seed(0)
    return {
        "mlp": (
            nn.Sequential(nn.Linear(64, 96), nn.HardSwish(), nn.Linear(96, 32)).eval(),
            np.zeros((40, 64), np.float32),
        ),
        "convnet": (
            nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.Conv2d(8, 8, 3, groups=8, padding=1),
                nn.MaxPool2d(2),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(8, 5),
            ).eval(),
            np.zeros((3, 3, 16, 16), np.float32),
        ),
        "encoder": (
            nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval(),
            np.zeros((3, 7, 16), np.float32),
        ),
    }


def _run(exe: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe)],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


@pytest.mark.needs_cc
@pytest.mark.parametrize("sanitizer", list(SANITIZERS))
@pytest.mark.parametrize("model", ["mlp", "convnet", "encoder"])
def test_the_thread_pool_is_clean_under_sanitizers(
    model: str, sanitizer: str, tmp_path: Path
) -> None:
    missing = _runtime_missing(sanitizer)
    if missing is not None:
        pytest.skip(missing)
    module, example = _models()[model]
    flags, env = SANITIZERS[sanitizer]
    exe = build_harness(module, example, (*flags, *COMMON), tmp_path, _san.gcc() or "gcc")
    run = _run(exe, env)
    found = [r for r in REPORTS if r in run.stderr]
    assert run.returncode == 0 and not found, f"{found}\n{run.stdout}\n{run.stderr[-6000:]}"
    assert "pool harness: ok" in run.stdout
    tasks = int(run.stdout.split("threads alive: ")[1].split()[0])
    assert tasks >= 2, "the pool's worker threads never started"


RACE = r"""
#include <pthread.h>
#include <stdio.h>
static long counter;
static void *bump(void *arg) { for (int i = 0; i < 100000; ++i) counter++; return arg; }
int main(void) {
    pthread_t a, b;
    pthread_create(&a, NULL, bump, NULL);
    pthread_create(&b, NULL, bump, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("%ld\n", counter);
    return 0;
}
"""


@pytest.mark.needs_cc
def test_the_tsan_harness_reports_a_planted_race(tmp_path: Path) -> None:
    """Two threads incrementing one counter without a lock, built with the flags above: the
    run must stop with TSan's report, so a clean pool run means no race, not a blind tool."""
    missing = _runtime_missing("tsan")
    if missing is not None:
        pytest.skip(missing)
    flags, env = SANITIZERS["tsan"]
    (tmp_path / "race.c").write_text(RACE)
    exe = tmp_path / "race"
    subprocess.run(
        [_san.gcc() or "gcc", *flags, *COMMON, str(tmp_path / "race.c"), "-o", str(exe)],
        check=True,
        capture_output=True,
    )
    run = _run(exe, env)
    assert run.returncode != 0 and "WARNING: ThreadSanitizer: data race" in run.stderr


def test_the_sanitize_option_needs_the_runtime_preloaded() -> None:
    from lucid.errors import LucidError

    with pytest.raises(LucidError, match=r"LD_PRELOAD=.*libasan"):
        lucid.compile(nn.Linear(2, 2), options={"sanitize": "address"})
    with pytest.raises(ValueError, match=r"'sanitize' must be None or one of 'address'"):
        lucid.compile(nn.Linear(2, 2), options={"sanitize": "thread"})


SANITIZED_COMPILE = """
import numpy as np, lucid
from lucid import nn
lucid.random.seed(1)
model = nn.Sequential(nn.Linear(5, 7), nn.HardSwish(), nn.Linear(7, 3))
compiled = lucid.compile(model, options={"sanitize": "address"})
x = lucid.Tensor(np.linspace(-3, 3, 20, dtype=np.float32).reshape(4, 5))
compiled(x).sum().backward()
assert "-fsanitize=address,undefined" in compiled.build_info.command
grads = [p.grad.copy() for p in model.parameters()]
model.zero_grad()
model(x).sum().backward()
for g, p in zip(grads, model.parameters()):
    np.testing.assert_allclose(g, p.grad, rtol=1e-5, atol=1e-6)
print("sanitized compile: ok")
"""


@pytest.mark.needs_cc
@pytest.mark.skipif(_san.missing() is not None, reason=str(_san.missing()))
def test_the_sanitize_option_builds_instrumented_forward_and_backward(tmp_path: Path) -> None:
    libs = _san.runtimes()
    assert libs is not None
    env = {
        **os.environ,
        "LD_PRELOAD": " ".join(libs),
        "ASAN_OPTIONS": "detect_leaks=0",
        "LUCID_CACHE_DIR": str(tmp_path),
        "PYTHONPATH": str(_san.ROOT),
    }
    run = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", SANITIZED_COMPILE],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0 and "sanitized compile: ok" in run.stdout, run.stderr[-4000:]
