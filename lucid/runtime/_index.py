"""The warm-start index: a cheap key from what codegen reads -> the build key of its C.

A build key (build.py) hashes the generated C, so finding a cached module that way means
running codegen (Jinja template compilation alone is ~150 ms per process) and `cc --version`.
The index key hashes the inputs of that computation instead: the optimised IR text (what
codegen reads; locations are not part of it), the codegen and build options, a fingerprint
of lucid's own code (a changed code generator must not be served old C), what codegen reads
from the machine (/proc/cpuinfo for isa "auto" and -march=native, the CPU kind (vendor, family,
model) whose gemm.CPU_TABLE entry decides GEMM blocking, cpu0's cache sizes for the cost model), the compiler's identity (path, inode, size, mtime, ctime of the resolved binary:
a stand-in for `--version`) and the Python ABI. It names a build key in
`<root>/index/<index key>.json`; the entry itself is still loaded through build.py's verified
path (sha256 of the .so), so a stale or wrong index file costs a rebuild, never a bad load.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

import lucid
from lucid.runtime import build as _build
from lucid.runtime import cache as _cache

FORMAT = 2  # bump when the index key's parts or the index file's schema change
_CACHES = "/sys/devices/system/cpu/cpu0/cache"


@cache
def code_fingerprint() -> str:
    """sha256 of the identity of every .py and template file of the lucid package (its path,
    size, mtime, ctime, inode and device), once per process. Any write to a file changes its
    ctime, so an edited code generator is never served old C; a file rewritten with the same
    bytes (a reinstall) also counts as changed, which costs one codegen and pass run, never a
    wrong load (the build key still hashes the C). Stat instead of reading and hashing the
    ~1.4 MB of source: 1.6 ms instead of 8 ms of every warm start (196 files, AMD EPYC)."""
    return tree_fingerprint(Path(lucid.__file__).parent)


def tree_fingerprint(top: Path) -> str:
    """code_fingerprint of the .py and .j2 files under `top` (not cached): one line per file,
    in a fixed order (sorted names, depth first), of its path below `top` and its stat."""
    lines: list[str] = []
    _fingerprint_lines(str(top), "", lines)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _fingerprint_lines(path: str, rel: str, lines: list[str]) -> None:
    """Append tree_fingerprint's lines for the directory `path` (`rel` below the top)."""
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        name = entry.name
        if entry.is_dir(follow_symlinks=False):  # as os.walk: a linked dir is not entered
            if name != "__pycache__":  # bytecode follows the sources it was compiled from
                _fingerprint_lines(entry.path, f"{rel}{name}/", lines)
        elif name.endswith((".py", ".j2")):
            st = os.stat(entry.path)
            ident = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
            lines.append(f"{rel}{name}\0{ident}\n")


@cache
def _cache_sizes() -> str:
    """The raw sysfs description of cpu0's caches (codegen's GEMM blocking reads it)."""
    parts = []
    try:
        indices = sorted(n for n in os.listdir(_CACHES) if n.startswith("index"))
    except OSError:
        return ""
    for index in indices:
        for field in ("level", "type", "size", "coherency_line_size", "ways_of_associativity"):
            try:
                with open(os.path.join(_CACHES, index, field), encoding="utf-8") as f:
                    parts.append(f"{index}/{field}={f.read().strip()}")
            except OSError:
                parts.append(f"{index}/{field}=?")
    return "\n".join(parts)


# The /proc/cpuinfo fields gemm.CPU_TABLE is keyed by: vendor, family, model (x86) or
# implementer, architecture, part (ARM). Read here as raw lines (a superset of the key) rather
# than through lucid.codegen.gemm, whose import pulls in Jinja: a warm start never needs it.
_CPU_KIND_FIELDS = (
    "vendor_id",
    "cpu family",
    "model",
    "CPU implementer",
    "CPU architecture",
    "CPU part",
)


@cache
def _cpu_kind() -> str:
    """The CPU kind codegen looks up gemm.CPU_TABLE by, as its /proc/cpuinfo lines. The cpu
    hash below does not hold it (a KVM guest's model name can be a bare "Intel(R) Xeon(R)
    Processor"), so without it two kinds with equal flags would share C blocked for one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [" ".join(ln.split()) for ln in f if ln.startswith(_CPU_KIND_FIELDS)]
    except OSError:
        return ""
    return "\n".join(dict.fromkeys(lines))  # every core repeats the same lines


def _compiler_identity(cc: str | None) -> list[Any]:
    """The resolved compiler argv and its binary's stat: changes when the compiler does."""
    compiler = _build.resolve_compiler(cc)
    real = os.path.realpath(compiler[0])  # /usr/bin/cc -> alternatives -> the real binary
    st = os.stat(real)
    return [list(compiler), real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def index_key(ir_text: str, isa: str, prefix: str, build: Any, profile: bool = False) -> str:
    """sha256 over everything that decides the build key of the C generated for `ir_text`
    (`profile`: the C times its kernel calls)."""
    import _cffi_backend  # what every cffi module loads anyway; cffi checks it matches cffi

    parts = {
        "format": FORMAT,
        "cache_format": _cache.FORMAT,
        "ir": ir_text,
        "isa": isa,
        "prefix": prefix,
        "profile": profile,
        "compiler": _compiler_identity(build.cc),
        "flags": list(build.flags),
        "extra_link": list(build.extra_link),
        "lucid": lucid.__version__,
        "code": code_fingerprint(),
        "cffi": _cffi_backend.__version__,
        "cache_tag": sys.implementation.cache_tag,
        "ext_suffix": _build.EXT_SUFFIX,
        "machine": os.uname().machine,
        # codegen reads the cpu for isa "auto" even without -march=native, so always included
        "cpu": _build.cpu_id(),
        "cpu_kind": _cpu_kind(),
        "caches": _cache_sizes(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _index_dir(root: Path) -> Path:
    return root / _cache.INDEX_DIR


def lookup(root: Path, ikey: str) -> dict[str, Any] | None:
    """The index record of `ikey` (build key, prefix, batch symbol), or None if absent/invalid."""
    try:
        with open(_index_dir(root) / f"{ikey}.json", encoding="utf-8") as f:
            record = _cache.unseal(json.load(f))
    except (OSError, ValueError):
        return None
    if record is None:
        return None  # damaged since written (its seal does not match): a rebuild, not a wrong load
    if (
        not isinstance(record, dict)
        or record.get("format") != FORMAT
        or record.get("index_key") != ikey
        or not isinstance(record.get("build_key"), str)
        or not _cache.is_key(record["build_key"])
        or not isinstance(record.get("prefix"), str)
        or not isinstance(record.get("batch_symbol"), (str, type(None)))
    ):
        return None
    return record


def record(root: Path, ikey: str, build_key: str, prefix: str, batch_symbol: str | None) -> None:
    """Write the index record of `ikey` atomically (a reader sees the old file or the new)."""
    data = {
        "format": FORMAT,
        "index_key": ikey,
        "build_key": build_key,
        "prefix": prefix,
        "batch_symbol": batch_symbol,
    }
    _write_json(_index_dir(root), f"{ikey}.json", _cache.seal(data))


def _write_json(directory: Path, name: str, data: Any) -> None:
    """Write directory/name atomically (a reader sees the old file or the new, never half)."""
    import tempfile  # here, not at the top: a warm start only reads the index

    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, directory / name)
    except BaseException:
        os.unlink(tmp)
        raise
