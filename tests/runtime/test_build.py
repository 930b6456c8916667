"""lucid.runtime.build: compile, call, cache hits across processes, locking, integrity, errors."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from lucid.errors import BuildError, CompilerNotFoundError
from lucid.runtime import build as build_mod
from lucid.runtime.build import BuildOptions, build

PROBE_CDEF = "int probe(int x);"

# Runs build() in a fresh interpreter and prints what it saw as JSON. With a barrier dir it
# signals readiness, then waits for "go", so several children reach build() together.
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    start = time.perf_counter()
    from lucid.runtime.build import build
    source, cdef, cache_dir, barrier = sys.argv[1:5]
    if barrier:
        open(os.path.join(barrier, f"ready-{os.getpid()}"), "w").close()
        while not os.path.exists(os.path.join(barrier, "go")):
            time.sleep(0.002)
    m = build(source, cdef, cache_dir=cache_dir)
    print(json.dumps({"from_cache": m.from_cache, "seconds": m.seconds, "key": m.key,
                      "value": m.lib.probe(2), "total": time.perf_counter() - start}))
    """
)


def probe_source(offset: int = 40) -> str:
    """A C function unique to this call (the comment), so no test shares a cache key."""
    return f"/* {uuid.uuid4().hex} */\nint probe(int x) {{ return x + {offset}; }}\n"


def spawn(source: str, cache_dir: Path, barrier: Path | str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, source, PROBE_CDEF, str(cache_dir), str(barrier)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err}"
    return json.loads(out)


@pytest.mark.needs_cc
def test_build_and_call(tmp_path: Path) -> None:
    m = build(probe_source(), PROBE_CDEF, cache_dir=tmp_path / "cache")
    assert m.lib.probe(2) == 42
    assert not m.from_cache and m.seconds > 0
    assert len(m.key) == 64 and m.path.name.startswith(f"_lucid_{m.key[:16]}")
    assert m.path.parent == tmp_path / "cache" / m.key
    assert os.path.isabs(m.command[0]) and "-O3" in m.command and "-ffast-math" not in m.command
    meta = json.loads((m.path.parent / "meta.json").read_text())
    assert meta["command"] == m.command and meta["so"] == m.path.name
    assert (m.path.parent / "source.c").read_text().endswith("return x + 40; }\n")
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


@pytest.mark.needs_cc
def test_same_source_twice_is_a_cache_hit(tmp_path: Path) -> None:
    source = probe_source()
    first = build(source, PROBE_CDEF, cache_dir=tmp_path)
    second = build(source, PROBE_CDEF, cache_dir=tmp_path)
    assert not first.from_cache and second.from_cache
    assert second.lib is first.lib and second.key == first.key
    other = build(source, PROBE_CDEF, options=BuildOptions(flags=("-O1",)), cache_dir=tmp_path)
    assert other.key != first.key and not other.from_cache


@pytest.mark.needs_cc
def test_build_leaves_sys_path_and_environment_alone(tmp_path: Path) -> None:
    path, environ = list(sys.path), dict(os.environ)
    build(probe_source(), PROBE_CDEF, cache_dir=tmp_path)
    assert sys.path == path and dict(os.environ) == environ


@pytest.mark.needs_cc
def test_cache_hit_in_a_fresh_process(tmp_path: Path) -> None:
    source = probe_source()
    built = build(source, PROBE_CDEF, cache_dir=tmp_path)
    so_stat = built.path.stat()
    child = result(spawn(source, tmp_path))
    print(
        f"\nfresh-process cache hit: build() {child['seconds'] * 1e3:.1f} ms, "
        f"process incl. imports {child['total'] * 1e3:.0f} ms "
        f"(cold build was {built.seconds * 1e3:.0f} ms)"
    )
    assert child["from_cache"] and child["key"] == built.key and child["value"] == 42
    assert built.path.stat().st_mtime_ns == so_stat.st_mtime_ns  # not rebuilt behind our back
    assert child["seconds"] < built.seconds


@pytest.mark.needs_cc
@pytest.mark.slow
def test_concurrent_processes_build_once(tmp_path: Path) -> None:
    source, barrier = probe_source(), tmp_path / "barrier"
    barrier.mkdir()
    procs = [spawn(source, tmp_path / "cache", barrier) for _ in range(3)]
    deadline = time.monotonic() + 60
    while len(list(barrier.glob("ready-*"))) < len(procs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.005)
    (barrier / "go").touch()
    results = [result(p) for p in procs]
    assert sorted(r["from_cache"] for r in results) == [False, True, True]
    assert {r["value"] for r in results} == {42}


@pytest.mark.parametrize(
    "damage", ["truncate_so", "flip_so_byte", "meta_hash", "meta_garbage", "meta_missing"]
)
@pytest.mark.needs_cc
@pytest.mark.slow
def test_damaged_entry_is_rebuilt_not_loaded(tmp_path: Path, damage: str) -> None:
    source = probe_source()
    first = result(spawn(source, tmp_path))  # populate from another process: ours stays clean
    entry = tmp_path / first["key"]
    so = next(entry.glob("*.so"))
    meta_path = entry / "meta.json"
    if damage == "truncate_so":
        os.truncate(so, so.stat().st_size // 2)  # mapping this would SIGBUS the test process
    elif damage == "flip_so_byte":
        data = bytearray(so.read_bytes())
        data[len(data) // 2] ^= 0xFF
        so.write_bytes(bytes(data))
    elif damage == "meta_hash":
        meta = json.loads(meta_path.read_text())
        meta["so_sha256"] = "0" * 64
        meta_path.write_text(json.dumps(meta))
    elif damage == "meta_garbage":
        meta_path.write_text("{not json")
    else:
        meta_path.unlink()
    m = build(source, PROBE_CDEF, cache_dir=tmp_path)
    assert not m.from_cache and m.lib.probe(2) == 42
    meta = json.loads(meta_path.read_text())
    assert meta["so_sha256"] == build_mod._cache.file_sha256(m.path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [first["key"], f"{first['key']}.lock"]


@pytest.mark.needs_cc
def test_compile_error_raises_with_stderr_and_command(tmp_path: Path) -> None:
    source = "int probe(int x) { return x + undeclared_thing; }\n"
    with pytest.raises(BuildError) as info:
        build(source, PROBE_CDEF, cache_dir=tmp_path)
    message = str(info.value)
    assert "undeclared_thing" in message and "error" in message
    assert "-shared" in message and "-O3" in message  # the command line
    assert list(tmp_path.iterdir()) == [next(tmp_path.glob("*.lock"))]  # temp dir removed


@pytest.mark.needs_cc
def test_unloadable_module_raises_and_is_not_kept(tmp_path: Path) -> None:
    # The cdef promises g(); a -shared link accepts the missing symbol, dlopen does not.
    with pytest.raises(BuildError, match="undefined symbol: g"):
        build("int probe(int x) { return x; }", PROBE_CDEF + " int g(void);", cache_dir=tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


@pytest.mark.needs_cc
def test_bad_cdef_raises_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="cdef"):
        build("int probe(int x) { return x; }", "int probe(int x", cache_dir=tmp_path)


@pytest.mark.parametrize("cc_env", ["/nonexistent/bin/cc", None])
def test_missing_compiler_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cc_env: str | None
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    if cc_env is None:
        monkeypatch.delenv("CC", raising=False)
    else:
        monkeypatch.setenv("CC", cc_env)
    with pytest.raises(CompilerNotFoundError) as info:
        build(probe_source(), PROBE_CDEF, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "apt-get install gcc" in message and "set CC" in message
    assert (cc_env or "'cc'") in message


def test_import_works_without_a_compiler(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "CC": "/nonexistent/cc"}
    code = "import lucid, lucid.runtime.build, lucid.runtime.cache; print('ok')"
    run = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


@pytest.mark.parametrize(
    "flag", ["-ffast-math", "-Ofast", "-funsafe-math-optimizations", "-O2 -ffast-math"]
)
def test_fast_math_flags_are_rejected(flag: str) -> None:
    with pytest.raises(ValueError, match="NumPy's results"):
        BuildOptions(flags=("-O2", flag))
    with pytest.raises(ValueError, match="flush-to-zero"):
        BuildOptions(extra_link=(flag,))


def test_flags_must_be_a_tuple_of_arguments() -> None:
    with pytest.raises(TypeError, match="tuple of strings"):
        BuildOptions(flags="-O2")  # type: ignore[arg-type]
    assert BuildOptions(flags=["-O2"]).flags == ("-O2",)  # type: ignore[arg-type]


@pytest.mark.needs_cc
def test_debug_dir_gets_sources_and_command(tmp_path: Path) -> None:
    source = probe_source()
    m = build(source, PROBE_CDEF, cache_dir=tmp_path / "cache", debug_dir=tmp_path / "dbg")
    dbg = tmp_path / "dbg"
    assert (dbg / "source.c").read_text() == source
    assert (dbg / "cdef.h").read_text() == PROBE_CDEF
    assert "PyInit__lucid_" in (dbg / f"_lucid_{m.key[:16]}.c").read_text()
    assert "-ffp-contract=off" in (dbg / "build.sh").read_text()
    with pytest.raises(BuildError, match="sources in"):
        build("int probe(int x) { oops }", PROBE_CDEF, cache_dir=tmp_path, debug_dir=dbg)
    assert "oops" in (dbg / "source.c").read_text()  # kept for inspection after a failure


def subnormals_survive() -> bool:
    """True while NumPy float32 arithmetic produces subnormals (no FTZ/DAZ in this thread)."""
    return bool(np.float32(1e-38) * np.float32(1e-3) != 0)


MXCSR_FTZ_DAZ = 0x8000 | 0x0040


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="MXCSR is x86")
@pytest.mark.needs_cc
def test_loading_keeps_the_floating_point_mode(tmp_path: Path) -> None:
    assert subnormals_survive()
    reader = build(
        f"/* {uuid.uuid4().hex} */\n#include <xmmintrin.h>\n"
        "unsigned int mxcsr(void) { return _mm_getcsr(); }\n",
        "unsigned int mxcsr(void);",
        cache_dir=tmp_path,
    )
    before = reader.lib.mxcsr()
    other = build(probe_source(), PROBE_CDEF, cache_dir=tmp_path)  # default flags
    assert other.lib.probe(1) == 41
    after = reader.lib.mxcsr()
    assert before & MXCSR_FTZ_DAZ == 0 and after & MXCSR_FTZ_DAZ == 0, (hex(before), hex(after))
    assert subnormals_survive()


@pytest.mark.needs_cc
def test_fast_math_shared_object_would_flush_subnormals(tmp_path: Path) -> None:
    """Control: the probe above does see FTZ when a -ffast-math object is loaded (why we reject)."""
    (tmp_path / "f.c").write_text("float f(float x) { return x * 2.0f; }\n")
    cc = build_mod.resolve_compiler(None)
    lib = tmp_path / "libf.so"
    subprocess.run(
        [*cc, "-shared", "-fPIC", "-ffast-math", "f.c", "-o", lib.name], cwd=tmp_path, check=True
    )
    code = (
        f"import ctypes, numpy as np; ctypes.CDLL({str(lib)!r}); "
        "print(np.float32(1e-38) * np.float32(1e-3) != 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    if out.stdout.strip() == "True":
        pytest.skip("this compiler does not link crtfastmath.o into shared objects")
    assert out.stdout.strip() == "False"


@pytest.mark.needs_cc
def test_a_second_unit_is_compiled_alongside_and_linked(tmp_path: Path) -> None:
    """build(..., second_source=): the unit's object is compiled once into <cache>/objects while
    the module compiles, and linked; a module with another program and the same second unit
    links the same object without compiling it again; the key covers both units."""
    tag = uuid.uuid4().hex[:8]
    main = f"int two_{tag}(int x);\nint probe(int x) {{ return two_{tag}(x) + 1; }}"
    second = f'__attribute__((visibility("hidden"))) int two_{tag}(int x) {{ return 2 * x; }}'
    dbg, cache = tmp_path / "dbg", tmp_path / "c"
    m = build(main, PROBE_CDEF, cache_dir=cache, second_source=second, debug_dir=dbg)
    assert m.lib.probe(5) == 11 and not m.from_cache
    script = (dbg / "build.sh").read_text()
    assert script.count(" -c ") == 2 and "/objects/" in script.splitlines()[-1]
    assert any(p.name.endswith("_gemm.c") for p in dbg.iterdir())
    assert not list(m.path.parent.glob("*.o"))  # the module's own object is not kept
    (obj,) = (cache / "objects").glob("*.o")
    stamp = obj.stat().st_mtime_ns
    again = build(main.replace("+ 1", "+ 2"), PROBE_CDEF, cache_dir=cache, second_source=second)
    assert again.lib.probe(5) == 12 and obj.stat().st_mtime_ns == stamp
    other = build(main, PROBE_CDEF, cache_dir=cache, second_source=second.replace("2 *", "3 *"))
    assert other.key != m.key and other.lib.probe(5) == 16
    assert len(list((cache / "objects").glob("*.o"))) == 2
    assert build(main, PROBE_CDEF, cache_dir=cache, second_source=second).from_cache


@pytest.mark.needs_cc
@pytest.mark.parametrize(
    ("flags", "program_level", "second_level"),
    [(None, "-O3", "-O2"), (("-O0", "-g"), "-O0", "-O0"), (("-O1",), "-O1", "-O1")],
)
def test_the_second_unit_lowers_only_o3_to_o2(
    tmp_path: Path, flags: tuple[str, ...] | None, program_level: str, second_level: str
) -> None:
    """The GEMM unit is intrinsics code: -O3 becomes -O2 for it (a quarter of its compile
    time, the same speed); a level the user chose below that is kept, for the program too."""
    from lucid.runtime.build import BuildOptions

    tag = uuid.uuid4().hex[:8]
    main = f"int two_{tag}(int x);\nint probe(int x) {{ return two_{tag}(x) + 1; }}"
    second = f'__attribute__((visibility("hidden"))) int two_{tag}(int x) {{ return 2 * x; }}'
    options = BuildOptions() if flags is None else BuildOptions(flags=flags)
    dbg = tmp_path / "dbg"
    m = build(
        main, PROBE_CDEF, options=options, cache_dir=tmp_path, second_source=second, debug_dir=dbg
    )
    assert m.lib.probe(5) == 11
    script = (dbg / "build.sh").read_text().splitlines()
    compiles = [line.split() for line in script if " -c " in line]
    levels = {
        "second" if c[c.index("-c") + 1].endswith("_gemm.c") else "program": [
            a for a in c if a.startswith("-O")
        ]
        for c in compiles
    }
    assert levels == {"program": [program_level], "second": [second_level]}


@pytest.mark.needs_cc
def test_an_error_in_the_second_unit_names_its_command(tmp_path: Path) -> None:
    main = "int probe(int x) { return x; }"
    with pytest.raises(BuildError, match=r"(?s)failed.*_gemm\.c.*oops"):
        build(main, PROBE_CDEF, cache_dir=tmp_path, second_source="int oops(void) { return }")


@pytest.mark.needs_cc
@pytest.mark.slow
def test_a_grad_build_links_one_gemm_object_into_forward_and_backward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lucid.compile in train mode builds forward and backward with one shared second unit:
    its object is compiled once and both modules link it."""
    import lucid
    from lucid import nn

    monkeypatch.setenv("LUCID_CACHE_DIR", str(tmp_path))
    lucid.random.seed(5)
    model = nn.Sequential(nn.Linear(64, 96), nn.HardSwish(), nn.Linear(96, 40)).train()
    cm = lucid.compile(model)
    x = np.random.default_rng(0).standard_normal((50, 64)).astype(np.float32)
    cm(lucid.Tensor(x)).sum().backward()
    entry = cm.entry()
    assert entry.backward is not None
    infos = [entry.forward.build_info, entry.backward.build_info]
    assert not any(i.from_cache for i in infos)
    (obj,) = (tmp_path / "objects").glob("*.o")
    for info in infos:
        assert str(obj) in info.path.parent.joinpath("build.sh").read_text()


@pytest.mark.needs_cc
def test_cache_clear_removes_shared_objects(tmp_path: Path) -> None:
    from lucid.runtime.cache import cache_clear

    second = '__attribute__((visibility("hidden"))) int twice(int x) { return 2 * x; }'
    main = "int twice(int x);\nint probe(int x) { return twice(x); }"
    build(main, PROBE_CDEF, cache_dir=tmp_path, second_source=second)
    assert list((tmp_path / "objects").glob("*.o"))
    (tmp_path / "objects" / "mine.txt").write_text("not lucid's")
    cache_clear(tmp_path)
    assert [p.name for p in (tmp_path / "objects").iterdir()] == ["mine.txt"]


@pytest.mark.needs_cc
def test_a_damaged_shared_object_is_compiled_again(tmp_path: Path) -> None:
    """An object in <cache>/objects that no longer links (truncated on disk) is rebuilt once."""
    tag = uuid.uuid4().hex[:8]
    second = f'__attribute__((visibility("hidden"))) int thrice_{tag}(int x) {{ return 3 * x; }}'
    main = f"int thrice_{tag}(int x);\nint probe(int x) {{ return thrice_{tag}(x); }}"
    build(main, PROBE_CDEF, cache_dir=tmp_path, second_source=second)
    (obj,) = (tmp_path / "objects").glob("*.o")
    obj.write_bytes(b"not an object")
    # another module (one more line of source) with the same second unit links it
    m = build(main + "\n", PROBE_CDEF, cache_dir=tmp_path, second_source=second)
    assert m.lib.probe(4) == 12 and obj.read_bytes()[:4] == b"\x7fELF"


@pytest.mark.needs_cc
def test_a_damaged_object_that_still_links_is_caught_by_its_checksum(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An object replaced on disk by another valid object (here: one computing 4x instead of
    3x) links without complaint; its recorded sha256 catches it before the link, with a
    warning on the `lucid` logger, and the object is compiled again."""
    tag = uuid.uuid4().hex[:8]
    second = f'__attribute__((visibility("hidden"))) int thrice_{tag}(int x) {{ return 3 * x; }}'
    main = f"int thrice_{tag}(int x);\nint probe(int x) {{ return thrice_{tag}(x); }}"
    build(main, PROBE_CDEF, cache_dir=tmp_path, second_source=second)
    (obj,) = (tmp_path / "objects").glob("*.o")
    assert (tmp_path / "objects" / (obj.name + ".sha256")).is_file()
    wrong = build(main, PROBE_CDEF, cache_dir=tmp_path, second_source=second.replace("3 *", "4 *"))
    assert wrong.lib.probe(4) == 16
    (impostor,) = set((tmp_path / "objects").glob("*.o")) - {obj}
    obj.write_bytes(impostor.read_bytes())
    with caplog.at_level(logging.WARNING, logger="lucid"):
        m = build(main + "\n", PROBE_CDEF, cache_dir=tmp_path, second_source=second)
    assert m.lib.probe(4) == 12
    assert any("does not match its recorded sha256" in r.getMessage() for r in caplog.records)
    from lucid.runtime.cache import object_intact

    assert object_intact(obj)


@pytest.mark.needs_cc
def test_builds_remove_leftovers_of_killed_builds_but_not_live_ones(tmp_path: Path) -> None:
    """Temp dirs and object temp files whose key lock nobody holds are leftovers of killed
    processes: the next build removes them. One whose lock is held (a build in progress) stays."""
    from lucid.runtime.cache import key_lock

    dead, live = "a" * 64, "b" * 64
    (tmp_path / f".tmp-{dead}-x1").mkdir(parents=True)
    (tmp_path / f".tmp-{dead}-x1" / "half.c").write_text("int")
    (tmp_path / f".trash-{dead}-x2").mkdir()
    (tmp_path / f".tmp-{live}-x3").mkdir()
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / f"{dead}.999.1.tmp").write_bytes(b"partial")
    (tmp_path / f"{dead}.lock").touch()  # a lock file whose holder was killed
    with key_lock(tmp_path, live):  # held, as a build in another process would
        m = build("int probe(int x) { return x + 7; }", PROBE_CDEF, cache_dir=tmp_path)
        assert m.lib.probe(1) == 8
        names = {p.name for p in tmp_path.iterdir()} | {
            p.name for p in (tmp_path / "objects").iterdir()
        }
    assert f".tmp-{live}-x3" in names
    assert not {f".tmp-{dead}-x1", f".trash-{dead}-x2", f"{dead}.999.1.tmp"} & names
