"""Every kind of damage to every kind of cache artifact: a truncated, zeroed, bit-flipped file,
or two files of one kind swapped. Each must end in a rebuild (or a re-tune, or an index miss)
and correct results: never a crash, never another program's results (issue 18).

Artifacts: a module's .so (meta.json records its sha256), a shared GEMM object (its sha256
beside it), a warm-start index record and an autotune record (sealed JSON naming their key)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from lucid.codegen.gemm.blocking import Blocking
from lucid.runtime import _index
from lucid.runtime import autotune as _autotune
from lucid.runtime import cache as _cache
from lucid.runtime.build import BuildOptions, build
from tests.runtime.test_build import PROBE_CDEF, probe_source, result, spawn

DAMAGES = ["truncated", "zeroed", "bit-flipped", "swapped"]


def damage(kind: str, path: Path, other: Path) -> None:
    """Damage `path` in place (`other`: a file of the same kind, for a swap)."""
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zeroed":
        path.write_bytes(bytes(len(data)))
    elif kind == "bit-flipped":
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0x10
        path.write_bytes(bytes(flipped))
    else:
        path.write_bytes(other.read_bytes())
        other.write_bytes(data)


@pytest.mark.needs_cc
@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_module_is_rebuilt(tmp_path: Path, kind: str) -> None:
    sources = [probe_source(40), probe_source(50)]
    keys = [result(spawn(s, tmp_path))["key"] for s in sources]  # built by another process
    so = [next((tmp_path / k).glob("*.so")) for k in keys]
    damage(kind, so[0], so[1])
    for source, want in zip(sources, (42, 52)):
        m = build(source, PROBE_CDEF, cache_dir=tmp_path)  # this process has not loaded it
        assert m.lib.probe(2) == want
    for key in keys:  # both entries whole again
        assert _cache.valid_meta(tmp_path / key, key) is not None


def _second_unit(factor: int) -> tuple[str, str]:
    tag = f"f{factor}_{uuid.uuid4().hex[:12]}"  # a new program: nothing loaded in this process
    second = (
        f'__attribute__((visibility("hidden"))) int mul_{tag}(int x) {{ return {factor} * x; }}'
    )
    main = f"int mul_{tag}(int x);\nint probe(int x) {{ return mul_{tag}(x); }}"
    return main, second


@pytest.mark.needs_cc
@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_shared_object_is_compiled_again(tmp_path: Path, kind: str) -> None:
    units = [_second_unit(3), _second_unit(5)]
    for main, second in units:
        build(main, PROBE_CDEF, cache_dir=tmp_path, second_source=second)
    objects = sorted((tmp_path / "objects").glob("*.o"), key=lambda p: p.stat().st_mtime_ns)
    damage(kind, objects[0], objects[1])
    for (main, second), factor in zip(units, (3, 5)):
        # one more line of source: a new module, which links the (damaged) object
        m = build(main + "\n", PROBE_CDEF, cache_dir=tmp_path, second_source=second)
        assert m.lib.probe(7) == 7 * factor
    assert all(_cache.object_intact(o) for o in objects)


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_index_record_is_a_miss(tmp_path: Path, kind: str) -> None:
    root = _cache.cache_root(tmp_path / "cache")
    keys = {"1" * 64: "2" * 64, "3" * 64: "4" * 64}
    for ikey, bkey in keys.items():
        _index.record(root, ikey, bkey, "lucid", None)
    paths = [root / "index" / f"{ikey}.json" for ikey in keys]
    damage(kind, paths[0], paths[1])
    found = {ikey: _index.lookup(root, ikey) for ikey in keys}
    assert found[next(iter(keys))] is None
    for ikey, record in found.items():  # the other one: a miss or its own record, never the other's
        assert record is None or record["build_key"] == keys[ikey]


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_autotune_record_is_retuned(tmp_path: Path, kind: str) -> None:
    base = Blocking(mr=6, nr=16, mc=48, kc=64, nc=128)
    keys = [{"problem": "a"}, {"problem": "b"}]
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for key, path, mc in zip(keys, paths, (96, 144)):
        _autotune._write_record(path, key, Blocking(6, 16, mc, 64, 128), [base], [1.0])

    def read(i: int) -> Blocking | None:
        return _autotune._read_record(paths[i], keys[i], base)

    assert read(0) is not None and read(1) is not None
    damage(kind, paths[0], paths[1])
    assert read(0) is None  # retuned: never a blocking recorded for another problem
    assert read(1) is None or read(1) == Blocking(6, 16, 144, 64, 128)


@pytest.mark.needs_cc
def test_a_build_killed_with_sigkill_leaves_nothing_that_stays(tmp_path: Path) -> None:
    """kill -9 of a process in the middle of a build (its compiler is slow on purpose): the
    next build of the same program succeeds and removes the dead build's temp dir."""
    import signal
    import subprocess
    import sys
    import time

    slow_cc = tmp_path / "slowcc"
    # slow only in the child, and only when compiling (not for --version): the same compiler,
    # so the same cache key, for the build after the kill
    slow_cc.write_text(
        '#!/bin/sh\ncase "$*" in *-o*) [ -n "$LUCID_TEST_SLOW" ] && sleep 30;; esac\nexec cc "$@"\n'
    )
    slow_cc.chmod(0o755)
    cache = tmp_path / "cache"
    source = probe_source(60)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys; from lucid.runtime.build import build, BuildOptions; "
                "build(sys.argv[1], sys.argv[2], cache_dir=sys.argv[3], "
                "options=BuildOptions(cc=sys.argv[4]))"
            ),
            source,
            PROBE_CDEF,
            str(cache),
            str(slow_cc),
        ],
        start_new_session=True,  # its own process group: the sleeping compiler dies with it
        env={**os.environ, "LUCID_TEST_SLOW": "1"},
    )
    deadline = time.monotonic() + 60
    while not list(cache.glob(".tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(cache.glob(".tmp-*")), "the child never started its build"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    m = build(source, PROBE_CDEF, cache_dir=cache, options=BuildOptions(cc=str(slow_cc)))
    assert m.lib.probe(2) == 62 and not m.from_cache
    assert not list(cache.glob(".tmp-*"))
