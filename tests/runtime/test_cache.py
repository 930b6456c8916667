"""lucid.runtime.cache: where the cache lives, who may own it, and its maintenance API."""

from __future__ import annotations

import os
import stat
import threading
import time
import uuid
from pathlib import Path

import pytest

from lucid.errors import LucidError
from lucid.runtime.build import build
from lucid.runtime.cache import cache_clear, cache_info, cache_root, default_cache_dir, key_lock


def tiny(cache_dir: Path) -> Path:
    """Build a unique one-function module into cache_dir; return its entry directory."""
    m = build(
        f"/* {uuid.uuid4().hex} */ int one(void) {{ return 1; }}",
        "int one(void);",
        cache_dir=cache_dir,
    )
    assert m.lib.one() == 1
    return m.path.parent


def test_default_location_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LUCID_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("LUCID_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "lucid"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "lucid"


@pytest.mark.needs_cc
def test_env_cache_dir_is_used_by_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUCID_CACHE_DIR", str(tmp_path / "from-env"))
    m = build(f"/* {uuid.uuid4().hex} */ int two(void) {{ return 2; }}", "int two(void);")
    assert m.path.parent.parent == tmp_path / "from-env"


def test_created_private(tmp_path: Path) -> None:
    old = os.umask(0o002)  # a permissive umask must not leak into the cache dir's mode
    try:
        root = cache_root(tmp_path / "a" / "b" / "cache")
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o757])
@pytest.mark.needs_cc
def test_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(LucidError, match="writable by group or others"):
        build("int one(void) { return 1; }", "int one(void);", cache_dir=shared)
    assert list(shared.iterdir()) == []  # refused before anything was written


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown")
def test_foreign_owner_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    with pytest.raises(LucidError, match="owned by uid 65534"):
        cache_root(foreign)


def test_a_file_is_not_a_cache_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(LucidError, match="not a directory"):
        cache_info(tmp_path / "file")


@pytest.mark.needs_cc
def test_info_and_clear(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    empty = {"path": str(root), "entries": 0, "index_entries": 0, "total_bytes": 0}
    assert cache_info(root) == empty
    assert cache_clear(root) == 0 and not root.exists()  # neither creates the dir
    entries = [tiny(root), tiny(root)]
    key = "f" * 64
    (root / f".tmp-{key}-leftover").mkdir()  # from a killed build
    (root / "notes.txt").write_text("not lucid's")
    info = cache_info(root)
    so_bytes = sum(p.stat().st_size for e in entries for p in e.iterdir())
    assert info["entries"] == 2 and info["total_bytes"] >= so_bytes > 0
    assert cache_clear(root) == 2
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]
    assert cache_info(root)["entries"] == 0


def test_lock_is_not_split_when_clear_unlinks_the_file(tmp_path: Path) -> None:
    """A waiter on an unlinked lock file must re-open it, not run beside the new holder."""
    root = cache_root(tmp_path / "cache")
    key = "a" * 64
    entered = threading.Event()

    def waiter() -> None:
        with key_lock(root, key):
            entered.set()

    old = key_lock(root, key)
    old.__enter__()
    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.1)  # let the waiter open the old file and block on it
    os.unlink(root / f"{key}.lock")  # what cache_clear does while holding the lock
    with key_lock(root, key):  # a newcomer locks the new file
        old.__exit__(None, None, None)
        time.sleep(0.1)
        assert not entered.is_set()  # the waiter woke on the dead inode and queued again
    thread.join(timeout=10)
    assert entered.is_set()
