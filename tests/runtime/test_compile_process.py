"""lucid.compile across processes: the on-disk hit in a fresh process, two processes compiling
at once, and a machine without a C compiler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

CHILD = """
import json, sys, time
start = time.perf_counter()
import numpy as np
import lucid
sys.path.insert(0, {here!r})
from test_compile_models import Seed
cm = lucid.compile(Seed().eval(), dynamic_batch=True)
out = cm(np.ones((1, 3), np.float32))
first = time.perf_counter() - start
info = cm.build_info
print(json.dumps({{"from_cache": info.from_cache, "first_call": first, "load": info.seconds,
                  "shape": list(out.shape)}}))
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
    env = dict(os.environ, LUCID_CACHE_DIR=str(tmp_path / "disk"), **extra)
    env.pop("LUCID_DEBUG_DIR", None)
    return env


def result(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_second_process_loads_from_disk(tmp_path):
    code = CHILD.format(here=str(HERE))
    first = result(run_child(code, child_env(tmp_path)))
    second = result(run_child(code, child_env(tmp_path)))
    assert not first["from_cache"] and second["from_cache"]
    assert second["shape"] == [1, 2]
    print(
        f"\nfirst process: first call {first['first_call'] * 1e3:.0f} ms (compiled); "
        f"second process: first call {second['first_call'] * 1e3:.0f} ms "
        f"(module load {second['load'] * 1e3:.1f} ms, from disk)"
    )


def test_two_processes_compiling_at_once(tmp_path):
    code = CHILD.format(here=str(HERE))
    procs = [run_child(code, child_env(tmp_path)) for _ in range(2)]
    results = [result(p) for p in procs]
    assert sorted(r["from_cache"] for r in results) == [False, True]  # one build, one load
    entries = [p for p in (tmp_path / "disk").iterdir() if p.is_dir() and p.name != "index"]
    assert len(entries) == 1


def test_without_a_compiler(tmp_path):
    code = f"""
import numpy as np, lucid, sys
sys.path.insert(0, {str(HERE)!r})
from lucid.errors import CompilerNotFoundError
from test_compile_models import Seed
model = Seed().eval()
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
