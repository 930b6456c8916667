"""Environment faults around the compile cache give lucid errors naming the path, the cause and
the fix, with nothing half-written left behind; where the default cache is unusable lucid goes
on with a private temporary cache and one CacheWarning (issue 18)."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from lucid.errors import CacheError, CacheWarning
from lucid.runtime import build as _build
from lucid.runtime import cache as _cache

PROBE_CDEF = "int probe(int x);"
PROBE = "int probe(int x) { return x + 40; }"


@pytest.fixture
def default_cache(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No LUCID_CACHE_DIR and no earlier fallback: the default root decides."""
    monkeypatch.delenv("LUCID_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(_cache, "_fallback", None)
    return monkeypatch


def test_a_missing_home_is_not_created_and_a_private_cache_is_used(
    tmp_path: Path, default_cache: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "gone"
    default_cache.setenv("HOME", str(home))
    with pytest.warns(CacheWarning, match=r"home directory does not exist.*private temporary"):
        root = _cache.cache_root()
    assert not home.exists()
    assert root.is_dir() and (root.stat().st_mode & 0o077) == 0
    assert _cache.cache_root() == root  # one fallback per process, one warning
    m = _build.build(PROBE, PROBE_CDEF)
    assert m.lib.probe(2) == 42 and m.path.is_relative_to(root)


def test_an_unusable_default_cache_falls_back_with_a_warning(
    tmp_path: Path, default_cache: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    (xdg / "lucid").write_text("a file where the cache directory should be")
    default_cache.setenv("XDG_CACHE_HOME", str(xdg))
    with (
        caplog.at_level(logging.WARNING, logger="lucid"),
        pytest.warns(CacheWarning, match=r"lucid.*not a directory.*LUCID_CACHE_DIR"),
    ):
        root = _cache.cache_root()
    assert root != xdg / "lucid" and root.is_dir()
    assert any("private temporary cache" in r.getMessage() for r in caplog.records)
    assert (xdg / "lucid").read_text().startswith("a file")  # untouched


def test_a_chosen_cache_that_cannot_be_created_is_an_error_naming_path_cause_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("LUCID_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(CacheError) as info:
        _cache.cache_root()
    message = str(info.value)
    assert str(blocker / "cache") in message and "Not a directory" in message
    assert "LUCID_CACHE_DIR" in message


def test_a_read_only_file_system_is_named_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(path: object, mode: int = 0o777) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(_cache.os, "mkdir", read_only)
    with pytest.raises(CacheError, match=r"Read-only file system; the file system is read-only"):
        _cache.cache_root(tmp_path / "new")


@pytest.mark.skipif(os.getuid() != 0, reason="giving a directory away needs root")
def test_a_foreign_owned_cache_is_refused_when_chosen_and_replaced_when_default(
    tmp_path: Path, default_cache: pytest.MonkeyPatch
) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 12345, 12345)
    with pytest.raises(CacheError, match=r"owned by uid 12345"):
        _cache.cache_root(foreign)
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    foreign.rename(xdg / "lucid")
    default_cache.setenv("XDG_CACHE_HOME", str(xdg))
    with pytest.warns(CacheWarning, match=r"owned by uid 12345"):
        assert _cache.cache_root() != xdg / "lucid"


@pytest.mark.needs_cc
def test_a_full_disk_during_a_build_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_build, "_write_inputs", disk_full)
    with pytest.raises(CacheError) as info:
        _build.build("int probe(int x) { return x + 41; }", PROBE_CDEF, cache_dir=tmp_path)
    message = str(info.value)
    assert "No space left on device" in message and "free space" in message
    assert str(tmp_path) in message
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.needs_cc
def test_a_full_disk_when_writing_the_index_costs_only_the_index(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import lucid
    from lucid import nn
    from lucid.runtime import _index

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_index, "_write_json", disk_full)
    model = nn.Sequential(nn.Linear(3, 5), nn.HardSwish()).eval()
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(4, 3)
    with caplog.at_level(logging.WARNING, logger="lucid"):
        y = lucid.compile(model)(lucid.Tensor(x))
    np.testing.assert_allclose(y.data, model(lucid.Tensor(x)).data, rtol=1e-6, atol=1e-6)
    assert any("index not written" in r.getMessage() for r in caplog.records)
