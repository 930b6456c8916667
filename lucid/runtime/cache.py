"""The on-disk compile cache: where it lives, who may write it, per-key locks, entry integrity.

Layout of the cache root (one directory per key, nothing else is ever deleted by lucid):

    <root>/<key>/          a finished entry: meta.json, source.c, cdef.h, <module>.c, <module>.so
    <root>/<key>.lock      flock'ed by builders (exclusive) and loaders (shared)
    <root>/.tmp-<key>-*    a build in progress, renamed to <root>/<key> when complete
    <root>/.trash-<key>-*  a replaced or cleared entry on its way out
    <root>/index/          the warm-start index (_index.py): small JSON files naming build keys
    <root>/objects/        shared GEMM objects <okey>.o, each with <okey>.o.sha256 beside it

An entry appears in one `os.rename`, so a reader sees either nothing or a complete entry; its
meta.json stores the sha256 of the .so, checked before every load, so a truncated or altered
file (disk full, crash before writeback, tampering) is rebuilt instead of mapped: mapping a
truncated .so kills the process with SIGBUS. Shared objects are checked the same way before
every link (`object_intact`): a damaged object that still links would give modules that crash.
Builds remove the temp dirs and files of killed builds (`sweep_stale`): only those whose key
lock nobody holds, so a build in progress in another process is never touched.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lucid._logging import log as _log
from lucid.errors import CacheError, CacheWarning

META = "meta.json"
FORMAT = 1  # bump when the entry layout or meta.json schema changes; part of every key
INDEX_DIR = "index"
OBJECTS_DIR = "objects"  # compiled second units shared by modules (see build._shared_object)
_KEY_RE = re.compile(r"[0-9a-f]{64}")
_WORK_RE = re.compile(r"\.(tmp|trash)-([0-9a-f]{64})-")
_OBJECT_TMP_RE = re.compile(r"([0-9a-f]{64})\..*\.tmp$")


def is_key(name: str) -> bool:
    """Whether `name` has the form of a cache key (64 lowercase hex digits)."""
    return _KEY_RE.fullmatch(name) is not None


def default_cache_dir() -> Path:
    """The cache root: $LUCID_CACHE_DIR, else $XDG_CACHE_HOME/lucid, else ~/.cache/lucid."""
    env = os.environ.get("LUCID_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "lucid"
    return Path.home() / ".cache" / "lucid"


def cache_root(cache_dir: Path | str | None = None, *, create: bool = True) -> Path:
    """Resolve the cache root, create it 0700 if asked, and refuse one other users can write.

    A root the user chose (`cache_dir`, $LUCID_CACHE_DIR) that cannot be used is a CacheError
    naming the path, the cause and the fix. The default root (under $XDG_CACHE_HOME or the
    home directory) that cannot be used - no home directory, not writable, not ours, a
    read-only file system - is replaced, with one CacheWarning, by a private temporary cache
    for the rest of the process; lucid never creates a missing home directory."""
    chosen = cache_dir is not None or bool(os.environ.get("LUCID_CACHE_DIR"))
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = root.absolute()
    if not create:
        if os.path.lexists(root):
            _check_private(root)
        return root
    try:
        if not chosen and not _under_existing_home(root):
            raise CacheError(f"lucid cache directory {root}: the home directory does not exist")
        _make_root(root)
        return root
    except CacheError as exc:
        if chosen:
            raise
        return _private_fallback(root, exc)


def _make_root(root: Path) -> None:
    """Create root (0700) if missing and check it is private and writable, or raise CacheError."""
    if not os.path.lexists(root):
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(root, 0o700)
            os.chmod(root, 0o700)  # mkdir's mode passes through the umask; make it exact
        except FileExistsError:
            pass  # another process created it first; it is checked below like any existing dir
        except OSError as exc:
            raise environment_error(f"cannot create lucid cache directory {root}", exc) from exc
    _check_private(root)
    if not os.access(root, os.W_OK | os.X_OK):
        raise CacheError(
            f"lucid cache directory {root} is not writable by you; "
            f"run `chmod u+rwx {root}` or {_ADVICE}"
        )


def _under_existing_home(root: Path) -> bool:
    """False when root is under a home directory that does not exist ($HOME unset or stale)."""
    try:
        home = Path.home()
    except (KeyError, RuntimeError):
        return False
    return not root.is_relative_to(home) or home.is_dir()


_fallback: tuple[int, Path] | None = None  # (pid, root) of this process's temporary cache


def _private_fallback(wanted: Path, reason: CacheError) -> Path:
    """This process's private temporary cache, made at the first need and removed at exit."""
    import tempfile

    global _fallback
    if _fallback is None or _fallback[0] != os.getpid():
        root = Path(tempfile.mkdtemp(prefix="lucid-cache-"))
        _fallback = (os.getpid(), root)
        atexit.register(_remove_fallback, os.getpid(), root)
        message = (
            f"{reason}; lucid uses a private temporary cache {root} for this process (compiled "
            f"models are rebuilt in every process); {_ADVICE}"
        )
        _log.warning("%s", message)
        warnings.warn(message, CacheWarning, stacklevel=4)
    return _fallback[1]


def _remove_fallback(pid: int, root: Path) -> None:
    if os.getpid() == pid:  # not in a forked child, whose parent still uses it
        _rmtree(root)


def environment_error(what: str, exc: OSError) -> CacheError:
    """A CacheError for an OSError of the file system: the path, the cause and the fix."""
    cause = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        fix = "free space on that file system or " + _ADVICE
    elif exc.errno == errno.EROFS:
        fix = "the file system is read-only; " + _ADVICE
    elif exc.errno in (errno.EACCES, errno.EPERM):
        fix = "check its permissions or " + _ADVICE
    else:
        fix = _ADVICE
    return CacheError(f"{what}: {cause}; {fix}")


_ADVICE = "set LUCID_CACHE_DIR (or pass cache_dir=) to a private directory"


def _check_private(root: Path) -> None:
    """Raise unless root is a directory owned by us that no other user can write."""
    uid = os.getuid()
    advice = _ADVICE
    if root.is_symlink():
        link = os.lstat(root)
        # Whoever owns the link can point it elsewhere between our check and our load.
        if link.st_uid not in (uid, 0):
            raise CacheError(
                f"lucid cache directory {root} is a symlink owned by uid {link.st_uid}; "
                f"refusing to load compiled code through it; {advice}"
            )
    try:
        st = os.stat(root)
    except OSError as exc:
        raise CacheError(f"lucid cache directory {root} is not usable: {exc}; {advice}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise CacheError(f"lucid cache path {root} exists but is not a directory; {advice}")
    if st.st_uid != uid:
        raise CacheError(
            f"lucid cache directory {root} is owned by uid {st.st_uid}, not by you (uid {uid}); "
            f"lucid loads compiled code from it, so it must be yours alone; {advice}"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheError(
            f"lucid cache directory {root} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):o}); another user could plant code that lucid "
            f"would load; run `chmod 700 {root}` or {advice}"
        )


@contextlib.contextmanager
def key_lock(root: Path, key: str, *, shared: bool = False) -> Iterator[None]:
    """Hold flock on <root>/<key>.lock (exclusive to build or delete, shared to load)."""
    path = root / f"{key}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            # cache_clear unlinks lock files while holding them; a waiter that opened the old
            # file must not believe it holds the lock of the new one, so compare inodes.
            try:
                now = os.stat(path)
                held = os.fstat(fd)
                if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                    break
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read with read() (never mmap: a truncated file must not SIGBUS)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(obj: Path) -> Path:
    """Where the sha256 of a shared object is recorded: <okey>.o.sha256 beside it."""
    return obj.with_name(obj.name + ".sha256")


def record_checksum(built: Path, obj: Path) -> None:
    """Record the sha256 of `built` (about to be renamed to `obj`) for `object_intact`,
    written under a temporary name and renamed like the object itself."""
    target = checksum_path(obj)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(file_sha256(built) + "\n", encoding="ascii")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def object_intact(obj: Path) -> bool:
    """Whether `obj` exists and matches its recorded sha256 (no record counts as damaged: an
    object is only ever published after its record)."""
    try:
        recorded = checksum_path(obj).read_text(encoding="ascii").strip()
        return _KEY_RE.fullmatch(recorded) is not None and file_sha256(obj) == recorded
    except (OSError, UnicodeDecodeError):
        return False


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with a "sha256" field over its canonical JSON, for `unseal` to check: a JSON
    file in the cache that still parses after damage must not be believed."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return {**body, "sha256": digest}


def unseal(record: object) -> dict[str, Any] | None:
    """The record without its seal if the seal matches (see `seal`), else None."""
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return None
    body = {k: v for k, v in record.items() if k != "sha256"}
    try:
        text = json.dumps(body, sort_keys=True)
    except (TypeError, ValueError):
        return None
    if hashlib.sha256(text.encode()).hexdigest() != record["sha256"]:
        return None
    return body


def sweep_stale(root: Path, held: str | None = None) -> int:
    """Remove the `.tmp-<key>-*` / `.trash-<key>-*` dirs under `root` (and `<okey>.*.tmp`
    files under its objects dir) left by killed processes; return how many went.

    A leftover is stale when nobody holds its key's lock: builders and deleters hold it for
    as long as the temp exists. `held` is the key whose lock the caller holds itself (its own
    leftovers are stale by definition). A lock file that is gone has no holder either."""
    removed = 0
    for directory, pattern in ((root, _WORK_RE), (root / OBJECTS_DIR, _OBJECT_TMP_RE)):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            match = pattern.match(name)
            if match is None:
                continue
            key = match.group(match.lastindex or 0)
            if key != held and not _try_lock_free(directory, key):
                continue
            path = directory / name
            if path.is_dir() and not path.is_symlink():
                _rmtree(path)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
            removed += 1
    return removed


def _try_lock_free(root: Path, key: str) -> bool:
    """Whether nobody holds <root>/<key>.lock right now (a non-blocking probe; not kept)."""
    try:
        fd = os.open(root / f"{key}.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def valid_meta(entry: Path, key: str) -> dict[str, Any] | None:
    """meta.json of a complete entry whose .so matches its recorded size and sha256, else None."""
    try:
        meta = json.loads((entry / META).read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("key") != key:
            return None
        so_name = meta["so"]
        if not isinstance(so_name, str) or Path(so_name).name != so_name:
            return None  # a path escaping the entry is tampering, not a cache entry
        so = entry / so_name
        if so.stat().st_size != meta["so_bytes"] or file_sha256(so) != meta["so_sha256"]:
            return None
        return meta
    except (OSError, ValueError, KeyError, TypeError):
        return None


def new_workdir(root: Path, key: str) -> Path:
    """A private (0700) temp dir in the cache root, on the same filesystem as the entries;
    the caller holds the key's lock. Leftovers of killed builds are removed first."""
    import tempfile

    sweep_stale(root, held=key)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))


def install(root: Path, key: str, workdir: Path) -> Path:
    """Move a finished workdir to <root>/<key> atomically; the caller holds the key's lock."""
    remove_entry(root, key)  # a bad entry: rename() cannot replace a non-empty directory
    os.rename(workdir, root / key)
    return root / key


def remove_entry(root: Path, key: str) -> None:
    """Delete <root>/<key> if present; the caller holds the key's exclusive lock."""
    if os.path.lexists(root / key):
        _discard(root, key, root / key)


def _discard(root: Path, key: str, path: Path) -> None:
    """Rename path out of the way, then delete it, so no reader ever sees it half-deleted."""
    import tempfile

    trash = Path(tempfile.mkdtemp(prefix=f".trash-{key}-", dir=root))
    os.rename(path, trash / "old")
    _rmtree(trash)


def _rmtree(path: Path) -> None:
    """Delete a directory tree, ignoring errors (shutil is imported only when something is
    deleted: a warm start never does)."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def cache_info(cache_dir: Path | str | None = None) -> dict[str, Any]:
    """Summary of the cache: {"path", "entries", "index_entries", "total_bytes"} (the dir is
    not created)."""
    root = cache_root(cache_dir, create=False)
    entries = 0
    index_entries = 0
    total = 0
    if root.is_dir():
        for child in root.iterdir():
            if _KEY_RE.fullmatch(child.name) and child.is_dir():
                entries += 1
        with contextlib.suppress(OSError):
            index_entries = sum(
                1
                for n in os.listdir(root / INDEX_DIR)
                if _KEY_RE.fullmatch(n.removesuffix(".json"))
            )
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                with contextlib.suppress(OSError):  # a concurrent build may move files away
                    total += os.lstat(os.path.join(dirpath, name)).st_size
    return {
        "path": str(root),
        "entries": entries,
        "index_entries": index_entries,
        "total_bytes": total,
    }


def cache_clear(cache_dir: Path | str | None = None) -> int:
    """Delete every entry (waiting for builds in progress); return how many were removed.

    Only names lucid creates are touched, so a cache dir pointed at the wrong place by
    mistake loses nothing else. Modules already loaded by running processes keep working.
    """
    root = cache_root(cache_dir, create=False)
    if not root.is_dir():
        return 0
    removed = 0
    keys = set()
    for child in root.iterdir():
        work = _WORK_RE.match(child.name)
        if _KEY_RE.fullmatch(child.name) or child.name.endswith(".lock") or work:
            keys.add(work.group(2) if work else child.name.removesuffix(".lock"))
    for key in sorted(k for k in keys if _KEY_RE.fullmatch(k)):
        with key_lock(root, key):
            # Holding the exclusive lock, no build of this key is running: its temp dirs are
            # leftovers of killed processes.
            for child in root.glob(f".*-{key}-*"):
                if _WORK_RE.match(child.name):
                    _rmtree(child)
            entry = root / key
            if entry.is_dir() and not entry.is_symlink():
                _discard(root, key, entry)
                removed += 1
            os.unlink(root / f"{key}.lock")  # waiters notice the new inode (see key_lock)
    _clear_index(root)
    _clear_objects(root)
    return removed


def _clear_objects(root: Path) -> None:
    """Delete the shared GEMM objects (OBJECTS_DIR, see build._shared_object), each under its lock, so no build is
    linking one while it goes; then the dir, if nothing else is in it."""
    objects = root / OBJECTS_DIR
    if objects.is_symlink() or not objects.is_dir():
        return
    for name in os.listdir(objects):
        stem = name.split(".")[0]
        if not _KEY_RE.fullmatch(stem) or not name.endswith((".o", ".sha256", ".tmp", ".lock")):
            continue
        if name.endswith(".lock"):
            with key_lock(objects, stem):
                for leftover in objects.glob(f"{stem}.*"):
                    if leftover.name != f"{stem}.lock":
                        leftover.unlink(missing_ok=True)
                os.unlink(objects / name)
        elif not (objects / f"{stem}.lock").exists():
            (objects / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        os.rmdir(objects)


def _clear_index(root: Path) -> None:
    """Delete the index files lucid writes (records, temp files) and the index dir."""
    index = root / INDEX_DIR
    if index.is_symlink() or not index.is_dir():
        return
    for name in os.listdir(index):
        stem = name.removesuffix(".json").removesuffix(".pkl").removeprefix("passes-")
        # lowerings-KEY.json: written by earlier versions of lucid (a pipeline filter, removed);
        # passes-KEY.pkl: the pass memo and code-KEY.marshal the code memo (_memo.py);
        # jinja-SHA1.cache: compiled C templates (codegen._jinja)
        template = re.fullmatch(r"jinja-[0-9a-f]{40}\.cache", name)
        code = name.startswith("code-") and _KEY_RE.fullmatch(name[5:].removesuffix(".marshal"))
        ours = (
            _KEY_RE.fullmatch(stem.removeprefix("lowerings-"))
            or code
            or name.startswith(".tmp-")
            or template
        )
        if ours:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(index / name)
    with contextlib.suppress(OSError):
        os.rmdir(index)  # only if empty: nothing lucid did not write is touched
