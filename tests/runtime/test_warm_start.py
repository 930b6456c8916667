"""The warm-start index: a fresh process whose graphs are cached runs no codegen, and a stale,
corrupt or missing index record or entry falls back to codegen + build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lucid.runtime import _index
from lucid.runtime.build import BuildOptions
from lucid.runtime.cache import cache_clear, cache_info, cache_root

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

# A forward-only call, then a training step (augmented forward + backward: two more builds).
CHILD = """
import json, sys, time
import numpy as np
import lucid
from tests.models import seed_model  # imports no codegen (checked below)
model = seed_model()
cm = lucid.compile(model)
x = np.linspace(-4, 4, 12, dtype=np.float32).reshape(4, 3)
start = time.perf_counter()
with lucid.no_grad():
    y = cm(x)
forward_s = time.perf_counter() - start
eval_info = cm.build_info
start = time.perf_counter()
cm(lucid.Tensor(x)).sum().backward()
train_s = time.perf_counter() - start
entry = cm.entry()
infos = [eval_info, entry.forward.build_info, entry.backward.build_info]
print(json.dumps({
    "forward_s": forward_s, "train_s": train_s,
    "from_cache": [i.from_cache for i in infos],
    "keys": [i.key for i in infos],
    "codegen_s": [i.codegen_seconds for i in infos],
    "codegen_imported": "lucid.codegen.emit_c" in sys.modules,
    "jinja_imported": "jinja2" in sys.modules,
    "cffi_imported": "cffi" in sys.modules,
    "y": y.data.tolist(),
    "grad": next(model.parameters()).grad.tolist(),
    "source": cm.c_source, "backward_source": cm.backward_source,
}))
"""


def child(cache: Path) -> dict:
    """Run CHILD in a fresh interpreter on the cache dir `cache`; its JSON report."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, LUCID_CACHE_DIR=str(cache), PYTHONPATH=path)  # lucid and tests.models
    env.pop("LUCID_DEBUG_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.needs_cc
@pytest.mark.slow
def test_fresh_process_is_served_by_the_index_without_codegen(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = child(cache)
    assert cold["from_cache"] == [False, False, False] and cold["codegen_imported"]
    warm = child(cache)
    assert warm["from_cache"] == [True, True, True]
    assert not warm["codegen_imported"] and not warm["jinja_imported"]
    assert not warm["cffi_imported"]  # the cached module needs only _cffi_backend
    assert warm["codegen_s"] == [0.0, 0.0, 0.0] and warm["keys"] == cold["keys"]
    assert warm["y"] == cold["y"] and warm["grad"] == cold["grad"]
    # The C is read back from the entry, identical to what codegen produced.
    assert warm["source"] == cold["source"] and warm["backward_source"] == cold["backward_source"]
    assert cache_info(cache)["index_entries"] == 3
    print(
        f"\nwarm first call: forward {warm['forward_s'] * 1e3:.1f} ms, "
        f"training step {warm['train_s'] * 1e3:.1f} ms "
        f"(cold: {cold['forward_s'] * 1e3:.0f} ms, {cold['train_s'] * 1e3:.0f} ms)"
    )


def _index_records(cache: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in (cache / "index").glob("*.json")}


@pytest.mark.parametrize("damage", ["deleted entry", "truncated so", "garbage index"])
@pytest.mark.needs_cc
@pytest.mark.slow
def test_a_stale_index_record_falls_back_to_a_rebuild(tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    cold = child(cache)
    eval_key = cold["keys"][0]
    records = _index_records(cache)
    if damage == "deleted entry":
        cache_clear_one(cache, eval_key)
    elif damage == "truncated so":
        so = next((cache / eval_key).glob("*.so"))
        so.write_bytes(so.read_bytes()[:4096])
    else:
        for name in records:
            (cache / "index" / name).write_text('{"format": 1, "build_key": "../../x"}')
    warm = child(cache)
    assert warm["y"] == cold["y"] and warm["grad"] == cold["grad"]
    assert warm["codegen_imported"]  # the fallback ran codegen
    if damage == "garbage index":
        assert warm["from_cache"] == [True, True, True]  # entries were fine, found by C key
    else:
        assert warm["from_cache"][0] is False  # rebuilt, not loaded
    assert _index_records(cache) == records  # every record rewritten, pointing to the entries
    assert child(cache)["from_cache"] == [True, True, True]


def cache_clear_one(cache: Path, key: str) -> None:
    """Delete one entry the way a user might (rm -r), leaving the index record dangling."""
    import shutil

    shutil.rmtree(cache / key)


@pytest.mark.needs_cc
def test_index_key_changes_with_graph_options_and_flags() -> None:
    ir = "graph @forward(%x: f32[N,3]) -> (f32[N,3]) {\n  %0 = relu %x : f32[N,3]\n  return %0\n}\n"
    base = _index.index_key(ir, "auto", "lucid", BuildOptions())
    assert base == _index.index_key(ir, "auto", "lucid", BuildOptions())
    variants = [
        _index.index_key(ir.replace("relu", "relu6"), "auto", "lucid", BuildOptions()),
        _index.index_key(ir, "avx2", "lucid", BuildOptions()),
        _index.index_key(ir, "auto", "other", BuildOptions()),
        _index.index_key(ir, "auto", "lucid", BuildOptions(flags=("-O2",))),
        _index.index_key(ir, "auto", "lucid", BuildOptions(extra_link=("-lm",))),
        _index.index_key(ir, "auto", "lucid", BuildOptions(), profile=True),
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_index_key_follows_the_compiler_binary(tmp_path: Path) -> None:
    ir = "graph @g() -> () {\n  return\n}\n"
    cc = tmp_path / "mycc"
    cc.write_text("#!/bin/sh\nexit 0\n")
    cc.chmod(0o755)
    before = _index.index_key(ir, "auto", "lucid", BuildOptions(cc=str(cc)))
    cc.write_text("#!/bin/sh\nexit 0 # upgraded\n")  # size and mtime change, like an upgrade
    assert _index.index_key(ir, "auto", "lucid", BuildOptions(cc=str(cc))) != before


def test_code_fingerprint_changes_with_any_write_to_lucids_code(tmp_path: Path) -> None:
    """The fingerprint stats lucid's .py and .j2 files instead of hashing them: any write
    (same size, same bytes, an mtime put back) must still change it; other files must not."""
    (tmp_path / "pkg").mkdir()
    code, template = tmp_path / "pkg" / "gen.py", tmp_path / "pkg" / "k.c.j2"
    code.write_text("BLOCK = 512\n")
    template.write_text("{{ body }}\n")
    before = _index.tree_fingerprint(tmp_path)
    assert _index.tree_fingerprint(tmp_path) == before  # stable while nothing changes
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "gen.cpython-311.pyc").write_bytes(b"\0")
    assert _index.tree_fingerprint(tmp_path) == before
    tick = 0.05  # file times come from a coarse clock (a jiffy): let it move between writes
    time.sleep(tick)
    st = code.stat()
    code.write_text("BLOCK = 256\n")  # same size: a changed constant
    os.utime(code, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with its mtime put back
    edited = _index.tree_fingerprint(tmp_path)
    assert edited != before
    time.sleep(tick)
    template.write_text("{{ body }}\n")  # the same bytes again: a reinstall counts too
    assert _index.tree_fingerprint(tmp_path) not in {before, edited}
    code.rename(tmp_path / "pkg" / "gen2.py")
    assert _index.tree_fingerprint(tmp_path) not in {before, edited}


def test_lookup_rejects_malformed_records(tmp_path: Path) -> None:
    root = cache_root(tmp_path / "cache")
    ikey, bkey = "1" * 64, "2" * 64
    _index.record(root, ikey, bkey, "lucid", "N")
    assert _index.lookup(root, ikey) == {
        "format": _index.FORMAT,
        "index_key": ikey,
        "build_key": bkey,
        "prefix": "lucid",
        "batch_symbol": "N",
    }
    assert _index.lookup(root, "3" * 64) is None  # absent
    path = root / "index" / f"{ikey}.json"
    for bad in [
        "not json",
        "[]",
        json.dumps(
            {
                "format": 1,
                "index_key": ikey,
                "build_key": "../x",
                "prefix": "lucid",
                "batch_symbol": None,
            }
        ),
    ]:
        path.write_text(bad)
        assert _index.lookup(root, ikey) is None
    _index.record(root, "3" * 64, bkey, "lucid", None)
    assert _index.lookup(root, ikey) is None  # a record filed under another key's name


def test_lookup_rejects_a_record_edited_after_it_was_written(tmp_path: Path) -> None:
    """A record still well-formed after damage (its build key now names another entry that
    exists) fails its seal: a rebuild, never a load of the other program."""
    root = cache_root(tmp_path / "cache")
    ikey = "1" * 64
    _index.record(root, ikey, "2" * 64, "lucid", "N")
    path = root / "index" / f"{ikey}.json"
    record = json.loads(path.read_text())
    record["build_key"] = "4" * 64
    path.write_text(json.dumps(record))
    assert _index.lookup(root, ikey) is None


def test_clear_removes_the_index_too(tmp_path: Path) -> None:
    root = cache_root(tmp_path / "cache")
    _index.record(root, "1" * 64, "2" * 64, "lucid", None)
    (root / "index" / f"lowerings-{'4' * 64}.json").write_text("[]")  # from an earlier lucid
    assert cache_info(root)["index_entries"] == 1
    cache_clear(root)
    assert not (root / "index").exists()
    assert _index.lookup(root, "1" * 64) is None
    assert cache_info(root)["index_entries"] == 0
    # Files lucid did not write are left alone (and so is the directory holding them).
    _index.record(root, "1" * 64, "2" * 64, "lucid", None)
    (root / "index" / "notes.txt").write_text("mine")
    cache_clear(root)
    assert [p.name for p in (root / "index").iterdir()] == ["notes.txt"]
