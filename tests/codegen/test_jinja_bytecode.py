"""The compiled C templates kept in the cache (codegen._jinja.keep_bytecode_in): a new process
loads them instead of compiling every template from source; a damaged file is a miss that is
written again, never run; `lucid-ir cache clear` removes them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from lucid.codegen import _jinja
from lucid.runtime import cache as _cache

CONTEXT = {"r": SimpleNamespace(source="int x;", second=None, kernels=())}


@pytest.fixture
def fresh_env() -> Iterator[None]:
    """The shared Environment with no templates loaded, its bytecode cache restored after."""
    saved = _jinja.env().bytecode_cache
    _jinja.env().cache.clear()
    yield
    _jinja.env().cache.clear()
    _jinja.env().bytecode_cache = saved


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{_jinja.BYTECODE_PREFIX}*{_jinja.BYTECODE_SUFFIX}"))


def test_templates_compile_once_and_load_from_the_directory(
    tmp_path: Path, fresh_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _jinja.keep_bytecode_in(tmp_path)
    want = _jinja.render("units.c.j2", **CONTEXT)
    files = _files(tmp_path)
    assert len(files) == 1 and files[0].read_bytes().split(b"\n", 1)[0].isalnum()
    _jinja.env().cache.clear()  # as in a new process: the template is loaded again

    def no_compile(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled from source although its bytecode was kept")

    monkeypatch.setattr(_jinja.env(), "compile", no_compile)
    assert _jinja.render("units.c.j2", **CONTEXT) == want


def test_a_damaged_file_is_compiled_again_and_replaced(tmp_path: Path, fresh_env: None) -> None:
    _jinja.keep_bytecode_in(tmp_path)
    want = _jinja.render("units.c.j2", **CONTEXT)
    (path,) = _files(tmp_path)
    good = path.read_bytes()
    for damage in (good[:-7], good[:70] + bytes([good[70] ^ 1]) + good[71:], b"", b"\n\n"):
        path.write_bytes(damage)
        _jinja.env().cache.clear()
        assert _jinja.render("units.c.j2", **CONTEXT) == want
        digest, _, payload = path.read_bytes().partition(b"\n")  # written again, whole
        assert digest == hashlib.sha256(payload).hexdigest().encode() and len(payload) > 100


def test_an_unwritable_directory_only_costs_the_compile(tmp_path: Path, fresh_env: None) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    _jinja.keep_bytecode_in(blocked / "sub")
    assert "int x;" in _jinja.render("units.c.j2", **CONTEXT)


def test_cache_clear_removes_the_kept_templates(tmp_path: Path, fresh_env: None) -> None:
    root = _cache.cache_root(tmp_path / "cache")
    index = root / _cache.INDEX_DIR
    _jinja.keep_bytecode_in(index)
    _jinja.render("units.c.j2", **CONTEXT)
    assert _files(index)
    (index / "notes.txt").write_text("not lucid's")
    _cache.cache_clear(root)
    assert not _files(index) and (index / "notes.txt").exists()


def test_the_first_directory_that_takes_a_template_keeps_it(
    tmp_path: Path, fresh_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lucid.compile keeps templates beside the package (PACKAGE_BYTECODE, as Python's .pyc)
    and in the cache only when the package directory cannot be written."""
    beside, cache = tmp_path / "beside", tmp_path / "cache"
    _jinja.keep_bytecode_in(beside, cache)
    want = _jinja.render("units.c.j2", **CONTEXT)
    assert len(_files(beside)) == 1 and not _files(cache)
    _jinja.env().cache.clear()  # a new process, with another cache directory: still no compile
    _jinja.keep_bytecode_in(beside, tmp_path / "other cache")
    real = _jinja.env().compile
    monkeypatch.setattr(_jinja.env(), "compile", lambda *a, **k: pytest.fail("compiled again"))
    assert _jinja.render("units.c.j2", **CONTEXT) == want
    monkeypatch.setattr(_jinja.env(), "compile", real)
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    _jinja.env().cache.clear()
    _jinja.keep_bytecode_in(blocked / "sub", cache)
    assert _jinja.render("units.c.j2", **CONTEXT) == want
    assert len(_files(cache)) == 1


def test_a_copy_for_another_python_is_passed_over(
    tmp_path: Path, fresh_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A good file whose bytecode Jinja rejects (another Python's magic, another template
    source's checksum) is a miss in that directory, and the next one is asked."""
    beside, cache = tmp_path / "beside", tmp_path / "cache"
    _jinja.keep_bytecode_in(cache)
    want = _jinja.render("units.c.j2", **CONTEXT)
    (good,) = _files(cache)
    payload = b"j2-not-this-python" + good.read_bytes().partition(b"\n")[2][18:]
    beside.mkdir()
    (beside / good.name).write_bytes(hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    _jinja.env().cache.clear()
    _jinja.keep_bytecode_in(beside, cache)
    monkeypatch.setattr(_jinja.env(), "compile", lambda *a, **k: pytest.fail("not read"))
    assert _jinja.render("units.c.j2", **CONTEXT) == want  # the cache's copy
