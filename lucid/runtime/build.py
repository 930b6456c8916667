"""Build C into a loadable module: cffi API mode, lucid's own compiler call, an on-disk cache.

cffi writes the wrapper C (`set_source` + `emit_c_code`); lucid compiles it itself with the
flags of `BuildOptions` instead of cffi's `compile()`, which goes through setuptools/distutils:
that would add the interpreter's own CFLAGS (-fwrapv, -g, whatever Python was configured with),
its RUNPATH and linker choice, cost a setuptools import per build, and hide the exact command.

What only a build needs (subprocess, shutil, sysconfig, cffi) is imported where it is used: a
warm start loads through `load_cached` and never runs the compiler, and those imports were
~10 ms of its ~50 (AMD EPYC, Python 3.11). Its records are NamedTuples, not dataclasses: a
frozen dataclass costs 0.5-1.2 ms to create on Python 3.11 (it compiles six generated methods), a
NamedTuple ~0.1 ms, and every warm start pays for the classes of the runtime it imports.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import lucid
from lucid._logging import log as _log
from lucid.errors import BuildError, CompilerNotFoundError
from lucid.runtime import cache as _cache
from lucid.runtime.cache import cache_clear, cache_info

__all__ = ["BuildOptions", "BuiltModule", "build", "cache_clear", "cache_info", "load_cached"]


DEFAULT_FLAGS: tuple[str, ...] = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno")
DEFAULT_LINK: tuple[str, ...] = ("-lm", "-lpthread")

# Flags that change floating-point results (lucid's compiled code must agree with NumPy, see
# docs/DESIGN.md "Numerics") or the whole process's FP mode: with -ffast-math, -Ofast or
# -funsafe-math-optimizations gcc links crtfastmath.o even into a -shared object, whose
# constructor turns on flush-to-zero for every thread of the process that loads it; -mpc32/64
# link crtprec*.o, which lower x87 precision the same way.
_FORBIDDEN_FLAGS = frozenset(
    {
        "-ffast-math",
        "-Ofast",
        "-funsafe-math-optimizations",
        "-ffinite-math-only",
        "-fassociative-math",
        "-freciprocal-math",
        "-fno-signed-zeros",
        "-ffp-contract=fast",
        "-mpc32",
        "-mpc64",
        "-mdaz-ftz",
    }
)
# Always on: the object is a Python extension; hidden visibility keeps its kernels from
# binding to (or being interposed by) same-named symbols of other modules in the process.
_BASE_ARGS: tuple[str, ...] = ("-shared", "-fPIC", "-fvisibility=hidden")
# macOS does not let a shared object leave Python's symbols undefined unless told to.
_PLATFORM_LINK: tuple[str, ...] = (
    ("-undefined", "dynamic_lookup") if sys.platform == "darwin" else ()
)
_NO_COMPILER_HELP = "install gcc or clang (e.g. `apt-get install gcc`), or set CC to a C compiler"
# The suffix an extension module of this interpreter is loaded by (sysconfig's EXT_SUFFIX, the
# first of importlib's list), without importing sysconfig on a warm start.
EXT_SUFFIX: str | None = EXTENSION_SUFFIXES[0] if EXTENSION_SUFFIXES else None
_PY_INCLUDES_LOCK = threading.Lock()


@cache
def _py_includes() -> tuple[str, ...]:
    """Python's include directories, once per process. Under a lock: sysconfig fills its config
    dict lazily and without one, so a thread asking while another fills it can get None (a grad
    compile builds forward and backward on two threads)."""
    import sysconfig

    with _PY_INCLUDES_LOCK:
        paths = sysconfig.get_paths()
    return tuple(dict.fromkeys((paths["include"], paths["platinclude"])))


@dataclass(frozen=True)
class BuildOptions:
    """Compiler and flags for a build; never holds a flag that breaks lucid's numerics."""

    cc: str | None = None  # None: $CC (split like a shell word list) or "cc", found on PATH
    flags: tuple[str, ...] = DEFAULT_FLAGS
    extra_link: tuple[str, ...] = DEFAULT_LINK

    def __post_init__(self) -> None:
        for field in ("flags", "extra_link"):
            value = getattr(self, field)
            if isinstance(value, str) or not all(isinstance(f, str) for f in value):
                raise TypeError(
                    f"BuildOptions.{field} must be a tuple of strings, one argument each "
                    f"(e.g. ('-O2', '-g')), not {value!r}"
                )
            object.__setattr__(self, field, tuple(value))
            for flag in value:
                bad = [word for word in flag.split() if word in _FORBIDDEN_FLAGS]
                if bad:
                    raise ValueError(
                        f"BuildOptions.{field}: {bad[0]} is not allowed. lucid's compiled code "
                        "must give NumPy's results (NaN and inf handling, signed zeros, no "
                        "reassociation or contraction) and must not switch the process to "
                        "flush-to-zero: gcc links crtfastmath.o into the module for fast-math "
                        "flags, which changes the FP mode of the whole process on load. "
                        f"Use the default flags {' '.join(DEFAULT_FLAGS)} or a subset of them."
                    )


class BuiltModule(NamedTuple):
    """A loaded cffi module; `command` runs in path.parent, `seconds` is build or load time."""

    ffi: Any
    lib: Any
    path: Path
    key: str
    from_cache: bool
    seconds: float
    command: list[str]


class _Loaded(NamedTuple):
    ffi: Any
    lib: Any
    path: Path
    command: list[str]
    module: ModuleType  # keeps the extension alive for the life of the process


_LOADED: dict[str, _Loaded] = {}  # key -> module: the same key is never loaded twice
_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()
_VERSIONS: dict[tuple[Any, ...], str] = {}


def build(
    source: str,
    cdef: str,
    *,
    options: BuildOptions | None = None,
    cache_dir: Path | None = None,
    debug_dir: Path | None = None,
    second_source: str | None = None,
    unit_sources: Sequence[str] = (),
) -> BuiltModule:
    """Compile C `source` exposing the declarations `cdef`, or load it from the cache.

    `second_source`: a second translation unit linked into the same module (emit_c's split
    GEMM machinery), its object shared by every module that links the same text.
    `unit_sources`: more units of this module alone (emit_c's kernel units). Every unit is
    compiled by a compiler process of its own, all at once, then they are linked."""
    start = time.perf_counter()
    options = options if options is not None else BuildOptions()
    compiler = resolve_compiler(options.cc)
    version = _compiler_version(compiler)
    keyed = source if second_source is None else source + _SECOND_UNIT + second_source
    keyed += "".join(_KERNEL_UNIT + text for text in unit_sources)
    key = _cache_key(keyed, cdef, compiler, version, options)
    module_name = f"_lucid_{key[:16]}"
    second = None
    if second_source is not None:
        okey = _cache_key(
            second_source, "", compiler, version, replace(options, flags=second_flags(options))
        )
        # compiled second units are shared by every module that links one (_shared_object)
        objects = _cache.cache_root(cache_dir) / _cache.OBJECTS_DIR
        second = (second_source, objects / f"{okey}.o")
    commands = _commands(
        compiler, options, module_name, second[1] if second else None, len(unit_sources)
    )
    units = (source, second_source, tuple(unit_sources))
    if debug_dir is not None:
        _write_inputs(Path(debug_dir), units, cdef, module_name, commands)

    with _process_lock(key):
        loaded = _LOADED.get(key)
        from_cache = True
        if loaded is None:
            root = _cache.cache_root(cache_dir)
            entry = root / key
            with _cache.key_lock(root, key, shared=True):
                meta = _cache.valid_meta(entry, key)
                if meta is not None:
                    loaded = _load(module_name, entry / meta["so"], meta["command"])
                    _log.debug("cache hit: %s from %s", module_name, entry)
                elif os.path.isdir(entry):
                    _log.warning(
                        "lucid: cache entry %s is incomplete or damaged (its .so does not match "
                        "meta.json); building it again",
                        entry,
                    )
                else:
                    _log.debug("cache miss: %s", module_name)
            if loaded is None:
                with _cache.key_lock(root, key):
                    # Re-check: another process may have built it while we waited.
                    meta = _cache.valid_meta(entry, key)
                    if meta is None:
                        from_cache = False
                        meta = _build_entry(
                            root,
                            key,
                            module_name,
                            (units, second),
                            cdef,
                            commands,
                            version,
                            options,
                            debug_dir,
                        )
                        _log.info(
                            "built %s in %.2f s: %s",
                            module_name,
                            meta["build_seconds"],
                            shlex.join(meta["command"]),
                        )
                    try:
                        loaded = _load(module_name, entry / meta["so"], meta["command"])
                    except BuildError:
                        _cache.remove_entry(root, key)  # keep no entry that cannot load
                        raise
            _LOADED[key] = loaded
    seconds = time.perf_counter() - start
    return BuiltModule(
        loaded.ffi, loaded.lib, loaded.path, key, from_cache, seconds, list(loaded.command)
    )


def load_cached(key: str, *, cache_dir: Path | None = None) -> BuiltModule | None:
    """Load the cache entry `key` if it is complete and its .so matches its sha256; never builds.

    For callers that know the key without the C (the warm-start index): None on any miss, a
    corrupt entry or a module that does not load, so the caller falls back to `build`."""
    if not _cache.is_key(key):
        return None
    start = time.perf_counter()
    module_name = f"_lucid_{key[:16]}"
    with _process_lock(key):
        loaded = _LOADED.get(key)
        if loaded is None:
            root = _cache.cache_root(cache_dir)
            if not os.path.isdir(root / key):
                return None  # checked first so a stale index leaves no lock file behind
            with _cache.key_lock(root, key, shared=True):
                meta = _cache.valid_meta(root / key, key)
                if meta is None or meta.get("module") != module_name:
                    return None
                try:
                    loaded = _load(module_name, root / key / meta["so"], meta["command"])
                except BuildError:
                    return None  # `build` rebuilds it, and reports a failure to load again
                _log.debug("cache hit (warm-start index): %s from %s", module_name, root / key)
            _LOADED[key] = loaded
    seconds = time.perf_counter() - start
    return BuiltModule(
        loaded.ffi, loaded.lib, loaded.path, key, True, seconds, list(loaded.command)
    )


def _process_lock(key: str) -> threading.Lock:
    """One lock per key, so threads of one process neither build nor load a key twice."""
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def resolve_compiler(cc: str | None) -> tuple[str, ...]:
    """The compiler as an argv prefix whose first word is an absolute path."""
    if cc is not None:
        words, origin = [cc], f"BuildOptions.cc={cc!r}"
    elif os.environ.get("CC", "").strip():
        words, origin = shlex.split(os.environ["CC"]), f"$CC={os.environ['CC']!r}"
    else:
        words, origin = ["cc"], "the default 'cc'"
    exe = _which(words[0])
    if exe is None:
        raise CompilerNotFoundError(
            f"no C compiler found: {origin} is not an executable on PATH. lucid compiles "
            f"graphs to C at run time; {_NO_COMPILER_HELP}."
        )
    return (os.path.abspath(exe), *words[1:])


def _which(name: str) -> str | None:
    """`name` if it is a path to an executable file, else the first executable file of that
    name in a $PATH directory (shutil.which's answer on POSIX, without importing shutil and
    the compression modules it pulls in: this runs at every warm start)."""
    if os.sep in name or (os.altsep and os.altsep in name):
        candidates = [name]
    else:
        dirs = os.environ.get("PATH", os.defpath).split(os.pathsep)
        candidates = [os.path.join(d or os.curdir, name) for d in dirs]
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _compiler_version(compiler: tuple[str, ...]) -> str:
    """`<compiler> --version`, once per process (and again if the binary changes)."""
    import subprocess

    st = os.stat(compiler[0])
    memo = (compiler, st.st_ino, st.st_mtime_ns, st.st_size)
    if memo not in _VERSIONS:
        try:
            run = subprocess.run(
                [*compiler, "--version"],
                check=False,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CompilerNotFoundError(
                f"C compiler {shlex.join(compiler)} does not run ({exc}); {_NO_COMPILER_HELP}"
            ) from exc
        if run.returncode != 0:
            raise CompilerNotFoundError(
                f"`{shlex.join(compiler)} --version` failed with exit {run.returncode}: "
                f"{run.stderr.strip()}; {_NO_COMPILER_HELP}"
            )
        _VERSIONS[memo] = run.stdout.strip()
    return _VERSIONS[memo]


@cache
def cpu_id() -> str:
    """What -march=native resolves against: a cache on a shared home must not SIGILL elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [
                ln for ln in f if ln.startswith(("model name", "flags", "Features", "CPU part"))
            ]
        info = "".join(dict.fromkeys(lines))  # every core repeats the same lines
    except OSError:
        info = platform.processor()
    return hashlib.sha256(info.encode()).hexdigest()


def _cache_key(
    source: str, cdef: str, compiler: tuple[str, ...], version: str, options: BuildOptions
) -> str:
    """sha256 over everything that can change the built module or whether it loads."""
    import cffi  # imported only where used: a warm start through the index never needs it

    native = any("native" in flag for flag in options.flags)
    parts = {
        "format": _cache.FORMAT,
        "source": source,
        "cdef": cdef,
        "compiler": list(compiler),
        "compiler_version": version,
        "flags": list(options.flags),
        "extra_link": list(options.extra_link),
        "lucid": lucid.__version__,
        "cffi": cffi.__version__,  # the emitted wrapper C changes with cffi
        "cache_tag": sys.implementation.cache_tag,
        "ext_suffix": EXT_SUFFIX,
        "machine": platform.machine(),
        "cpu": cpu_id() if native else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _so_name(module_name: str) -> str:
    return module_name + (EXT_SUFFIX or ".so")


# Separate the units in the text the cache key hashes (NUL: never inside C source).
_SECOND_UNIT = "\0second translation unit\0"
_KERNEL_UNIT = "\0kernel unit\0"


def unit_file(module_name: str, index: int) -> str:
    """The file name of kernel unit `index` (0, 1, ...) of a module."""
    return f"{module_name}_k{index}.c"


class _Commands(NamedTuple):
    """The compiler commands of one module, run in its entry directory.

    One unit alone: `compiles` is the one command that compiles and links it. Else `compiles`
    are the module's own units (the program first, then its kernel units), each to an object
    in the entry, `shared` the shared second unit's compile to its object (or None), all run
    at once, and `link` links the objects."""

    compiles: tuple[list[str], ...]
    shared: list[str] | None = None
    link: list[str] | None = None

    @property
    def listed(self) -> list[list[str]]:
        """Every command, in an order a shell can run them one after another (build.sh)."""
        first = [self.shared] if self.shared is not None else []
        return [*first, *self.compiles, *([self.link] if self.link is not None else [])]


def _commands(
    compiler: tuple[str, ...],
    options: BuildOptions,
    module_name: str,
    second: Path | None,
    n_units: int = 0,
) -> _Commands:
    """The commands that build `module_name` from its program (<module>.c), its shared second
    unit (<module>_gemm.c, compiled to the object `second`) if any, and `n_units` kernel
    units (<module>_k0.c, ...)."""
    if second is None and n_units == 0:
        return _Commands((_command(compiler, options, module_name),))
    base = [*compiler, "-fPIC", "-fvisibility=hidden", *options.flags]
    includes = [f"-I{d}" for d in _py_includes()]
    so = _so_name(module_name)
    sources = [f"{module_name}.c", *(unit_file(module_name, i) for i in range(n_units))]
    objects = [name[:-2] + ".o" for name in sources]
    compiles = [[*base, *includes, "-c", sources[0], "-o", objects[0]]]
    compiles += [[*base, "-c", c, "-o", o] for c, o in zip(sources[1:], objects[1:])]
    link = [
        *compiler,
        *_BASE_ARGS,
        *options.flags,
        *objects,
        *([str(second)] if second is not None else []),
        "-o",
        so,
        *options.extra_link,
        *_PLATFORM_LINK,
    ]
    shared = None
    if second is not None:
        shared = [*compiler, "-fPIC", "-fvisibility=hidden", *second_flags(options)]
        shared += ["-c", f"{module_name}_gemm.c", "-o", str(second)]
    return _Commands(tuple(compiles), shared, link)


def second_flags(options: BuildOptions) -> tuple[str, ...]:
    """The flags of the shared second unit (the GEMM machinery): the build's, with -O3 lowered
    to -O2. Its hot loops are written with intrinsics (register transposes, the micro-kernels),
    so -O3's vectorizer and unroller only reach the scalar edges and the driver: at -O2 it
    compiles in 0.52 s instead of 0.69-0.75 s (gcc 12, AMD EPYC), the long pole of a cold MLP
    build, and GEMM, MLP forward and training, GPT and MobileNetV3 calls measured the same
    (alternating in one process, within 1%). Any other level is left as the user gave it."""
    return tuple("-O2" if flag == "-O3" else flag for flag in options.flags)


def _command(compiler: tuple[str, ...], options: BuildOptions, module_name: str) -> list[str]:
    """The compiler command line; file names are relative to the entry directory."""
    return [
        *compiler,
        *_BASE_ARGS,
        *options.flags,
        *(f"-I{d}" for d in _py_includes()),
        f"{module_name}.c",
        "-o",
        _so_name(module_name),
        *options.extra_link,
        *_PLATFORM_LINK,
    ]


def _write_inputs(
    directory: Path,
    units: tuple[str, str | None, tuple[str, ...]],
    cdef: str,
    module_name: str,
    commands: _Commands,
) -> None:
    """Write source.c, cdef.h, cffi's full <module>.c, the second unit <module>_gemm.c (if any),
    the kernel units <module>_k<i>.c and build.sh (the commands) to directory."""
    source, second_source, kernel_units = units
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "source.c").write_text(source, encoding="utf-8")
    (directory / "cdef.h").write_text(cdef, encoding="utf-8")
    if second_source is not None:
        (directory / f"{module_name}_gemm.c").write_text(second_source, encoding="utf-8")
    for i, text in enumerate(kernel_units):
        (directory / unit_file(module_name, i)).write_text(text, encoding="utf-8")
    script = "".join(f"{shlex.join(c)}\n" for c in commands.listed)
    (directory / "build.sh").write_text(f"#!/bin/sh\nset -e\n{script}", encoding="utf-8")
    import cffi

    ffi = cffi.FFI()
    try:
        ffi.cdef(cdef)
        ffi.set_source(module_name, source, compiler_verbose=False)  # no "generating" print
        ffi.emit_c_code(str(directory / f"{module_name}.c"))
    except (cffi.CDefError, cffi.VerificationError) as exc:
        raise BuildError(f"cffi rejected the cdef of module {module_name}: {exc}") from exc


def run_compiler(command: list[str], cwd: Path, *, what: str, where: str) -> str:
    """Run one compiler command in `cwd` and return its stderr (warnings); BuildError if it fails.

    `what` names the artifact and `where` tells the user where the sources are kept.
    """
    import subprocess

    try:
        run = subprocess.run(
            command,
            check=False,
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=1800,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _not_run(command, exc) from exc
    if run.returncode != 0:
        raise _failed(command, run.returncode, run.stderr, what, where)
    return run.stderr


def _not_run(command: list[str], exc: BaseException) -> BuildError:
    return BuildError(f"could not run the C compiler: {exc}\n  command: {shlex.join(command)}")


def _failed(command: list[str], code: int, stderr: str, what: str, where: str) -> BuildError:
    return BuildError(
        f"C compilation of {what} failed (exit {code}); {where}\n"
        f"  command: {shlex.join(command)}\n{stderr.rstrip()}"
    )


def _compile_units(commands: _Commands, work: Path, obj: Path | None, where: str) -> str:
    """Compile the module's units, each by a compiler process of its own, while the shared
    object `obj` (if any) is obtained (compiled here under its lock, waited for while another
    build compiles it, or found), then link; returns the compilers' stderr."""
    import subprocess

    assert commands.link is not None
    procs: list[tuple[list[str], subprocess.Popen[str]]] = []
    try:
        for command in commands.compiles:
            try:
                proc = subprocess.Popen(
                    command,
                    cwd=work,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                    errors="replace",
                )
            except OSError as exc:
                raise _not_run(command, exc) from exc
            procs.append((command, proc))
        warnings, compiled = "", False
        if commands.shared is not None and obj is not None:
            warnings, compiled = _shared_object(commands.shared, work, obj, where)
        for command, proc in procs:
            err = proc.communicate(timeout=1800)[1]
            if proc.returncode != 0:
                raise _failed(command, proc.returncode, err, command[-1], where)
            warnings += err
    except BaseException:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        raise
    link = commands.link
    try:
        return warnings + run_compiler(link, work, what=link[link.index("-o") + 1], where=where)
    except BuildError:
        if compiled or commands.shared is None or obj is None:
            raise
        # an object this build did not compile (removed by a cache clear since, or damaged
        # on disk): compile it again, once, and link again
        again, _ = _shared_object(commands.shared, work, obj, where, replace_existing=True)
        return warnings + again + run_compiler(link, work, what=obj.name, where=where)


def _shared_object(
    command: list[str], work: Path, obj: Path, where: str, *, replace_existing: bool = False
) -> tuple[str, bool]:
    """Make `obj` (a second unit's object, named by its key) exist: compile it unless a build of
    this or another process already did (or `replace_existing`); one build compiles it while the
    others wait. Written under a temporary name and renamed, so no reader sees a partial
    object. Returns (the compiler's stderr, whether this call compiled it)."""
    obj.parent.mkdir(mode=0o700, exist_ok=True)
    with _cache.key_lock(obj.parent, obj.stem):
        if obj.exists() and not replace_existing:
            if _cache.object_intact(obj):
                return "", False
            _log.warning(
                "lucid: shared object %s does not match its recorded sha256 (damaged on "
                "disk); compiling it again",
                obj,
            )
        _cache.sweep_stale(obj.parent.parent, held=obj.stem)
        tmp = obj.with_name(f"{obj.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            stderr = run_compiler([*command[:-1], str(tmp)], work, what=obj.name, where=where)
            _cache.record_checksum(tmp, obj)
            os.replace(tmp, obj)
        finally:
            tmp.unlink(missing_ok=True)
        return stderr, True


def _build_entry(
    root: Path,
    key: str,
    module_name: str,
    sources: tuple[tuple[str, str | None, tuple[str, ...]], tuple[str, Path] | None],
    cdef: str,
    commands: _Commands,
    version: str,
    options: BuildOptions,
    debug_dir: Path | None,
) -> dict[str, Any]:
    """Compile into a temp dir in the cache, record meta.json, and move it into place."""
    import shutil

    units, second = sources
    source = units[0]
    command = commands.compiles[0]  # the module's own compile
    try:
        work = _cache.new_workdir(root, key)
    except OSError as exc:
        raise _cache.environment_error(f"building {module_name} in {root}", exc) from exc
    progress = _Progress(module_name)
    try:
        start = time.perf_counter()
        _write_inputs(work, units, cdef, module_name, commands)
        where = f"sources in {debug_dir}" if debug_dir else "pass debug_dir= to keep sources"
        if commands.link is None:
            warnings = run_compiler(command, work, what=module_name, where=where)
        else:
            warnings = _compile_units(commands, work, second and second[1], where)
            for compile_ in commands.compiles:  # linked into the module
                (work / compile_[-1]).unlink()
        so = work / _so_name(module_name)
        meta = {
            "format": _cache.FORMAT,
            "key": key,
            "module": module_name,
            "so": so.name,
            "so_bytes": so.stat().st_size,
            "so_sha256": _cache.file_sha256(so),
            "command": command,
            "commands": commands.listed,
            "compiler_version": version,
            "flags": list(options.flags),
            "extra_link": list(options.extra_link),
            "compiler_stderr": warnings,  # kept for inspection
            "source_bytes": len(source.encode()),
            "lucid_version": lucid.__version__,
            "python": sys.implementation.cache_tag,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.perf_counter() - start, 4),
        }
        (work / _cache.META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        _cache.install(root, key, work)
        return meta
    except OSError as exc:  # disk full, read-only file system...: nothing half-written stays
        shutil.rmtree(work, ignore_errors=True)
        raise _cache.environment_error(f"building {module_name} in {work}", exc) from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        progress.stop()


class _Progress:
    """A line on stderr, when it is a terminal, for a build that takes more than a second:
    "lucid: compiling <module>... 3 s", redrawn each second and erased when the build ends.
    Nothing on a pipe or a file (logs get the INFO record of the build instead)."""

    DELAY = 1.0

    def __init__(self, module_name: str) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            tty = sys.stderr is not None and sys.stderr.isatty()
        except (AttributeError, ValueError):  # replaced or closed stderr
            tty = False
        if tty:
            self._thread = threading.Thread(target=self._run, args=(module_name,), daemon=True)
            self._thread.start()

    def _run(self, module_name: str) -> None:
        start = time.monotonic()
        shown = False
        while not self._stop.wait(self.DELAY):
            shown = True
            sys.stderr.write(
                f"\rlucid: compiling {module_name}... {time.monotonic() - start:.0f} s\x1b[K"
            )
            sys.stderr.flush()
        if shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _load(module_name: str, so: Path, command: list[str]) -> _Loaded:
    """Import the extension at `so` through importlib, leaving sys.path and sys.modules alone."""
    spec = importlib.util.spec_from_file_location(module_name, so)
    if spec is None or spec.loader is None:
        raise BuildError(f"{so} is not loadable as a Python extension module")
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as exc:
        # e.g. a cdef'd function the C never defines: linking a -shared object allows it,
        # the dynamic loader does not.
        raise BuildError(f"compiled module {so} failed to load: {exc}") from exc
    return _Loaded(module.ffi, module.lib, so, list(command), module)
