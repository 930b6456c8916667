"""lucid.compile across processes: the on-disk hit in a fresh process, two processes compiling
at once, and a machine without a C compiler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

CHILD = """
import json, time
start = time.perf_counter()
import numpy as np
import lucid
from tests.models import SeedModel
cm = lucid.compile(SeedModel().eval(), dynamic_batch=True)
out = cm(np.ones((1, 3), np.float32))
first = time.perf_counter() - start
info = cm.build_info
print(json.dumps({"from_cache": info.from_cache, "first_call": first, "load": info.seconds,
                  "shape": list(out.shape)}))
"""


def run_child(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The child's environment: its own cache, and the checkout importable (lucid, tests)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, LUCID_CACHE_DIR=str(tmp_path / "disk"), PYTHONPATH=path, **extra)
    env.pop("LUCID_DEBUG_DIR", None)
    return env


def result(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.needs_cc
@pytest.mark.slow
def test_second_process_loads_from_disk(tmp_path):
    first = result(run_child(CHILD, child_env(tmp_path)))
    second = result(run_child(CHILD, child_env(tmp_path)))
    assert not first["from_cache"] and second["from_cache"]
    assert second["shape"] == [1, 2]
    print(
        f"\nfirst process: first call {first['first_call'] * 1e3:.0f} ms (compiled); "
        f"second process: first call {second['first_call'] * 1e3:.0f} ms "
        f"(module load {second['load'] * 1e3:.1f} ms, from disk)"
    )


@pytest.mark.needs_cc
@pytest.mark.slow
def test_two_processes_compiling_at_once(tmp_path):
    procs = [run_child(CHILD, child_env(tmp_path)) for _ in range(2)]
    results = [result(p) for p in procs]
    assert sorted(r["from_cache"] for r in results) == [False, True]  # one build, one load
    entries = [p for p in (tmp_path / "disk").iterdir() if p.is_dir() and p.name != "index"]
    assert len(entries) == 1


def test_without_a_compiler(tmp_path):
    code = """
import numpy as np, lucid
from lucid.errors import CompilerNotFoundError
from tests.models import SeedModel
model = SeedModel().eval()
x = np.ones((2, 3), np.float32)
cm = lucid.compile(model)  # compiling is lazy: no error yet
try:
    cm(x)
except CompilerNotFoundError as exc:
    print("error:", exc)
else:
    raise SystemExit("no CompilerNotFoundError")
eager = model(lucid.Tensor(x)).data
interp = lucid.compile(model, backend="interpreter")(x).data
assert np.allclose(eager, interp, rtol=1e-6), (eager, interp)
print("eager and interpreter ok")
"""
    env = child_env(tmp_path, CC="lucid-no-such-cc", PATH=str(tmp_path / "empty-bin"))
    proc = run_child(code, env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "error: no C compiler found" in out and "install gcc or clang" in out
    assert "eager and interpreter ok" in out
