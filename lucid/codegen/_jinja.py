"""The one cached Jinja2 Environment that renders every C template of lucid's codegen.

Template names: `program.c.j2` is lucid/codegen/templates/program.c.j2; `gemm/driver.c.j2` is
lucid/codegen/gemm/templates/driver.c.j2 (the GEMM subpackage keeps its templates beside it).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from pathlib import Path

import jinja2

# the compiled templates' files in a bytecode directory (see keep_bytecode_in)
BYTECODE_PREFIX = "jinja-"
BYTECODE_SUFFIX = ".cache"
# Beside the templates, as Python keeps .pyc files: written by the first process that compiles
# a template when the package directory is writable, read by every later one whatever its cache
# directory. Compiling all 54 templates from source costs a process ~0.35-0.4 s, loading them
# 15 ms (AMD EPYC): a first compile of a small model was a third Jinja.
PACKAGE_BYTECODE = Path(__file__).resolve().parent / "__pycache__" / "jinja"


class _Bytecode(jinja2.BytecodeCache):
    """Compiled templates kept in directories, each file the sha256 of its payload then the
    payload (Jinja's bytecode, which itself names the template source's checksum and the Python
    version): a damaged or foreign file is a miss and is written again, never run. A template is
    read from the first directory holding a good copy and written into the first that takes it."""

    def __init__(self, directories: tuple[Path, ...]) -> None:
        self.directories = directories

    def _name(self, bucket: jinja2.bccache.Bucket) -> str:
        return f"{BYTECODE_PREFIX}{bucket.key}{BYTECODE_SUFFIX}"

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        for directory in self.directories:
            try:
                data = (directory / self._name(bucket)).read_bytes()
            except OSError:
                continue
            digest, _, payload = data.partition(b"\n")
            if digest == hashlib.sha256(payload).hexdigest().encode():
                bucket.bytecode_from_string(payload)
                if bucket.code is not None:  # else another Python's or an older Jinja's
                    return

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        payload = bucket.bytecode_to_string()
        data = hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        for directory in self.directories:
            if _write(directory, self._name(bucket), data):
                return


def _write(directory: Path, name: str, data: bytes) -> bool:
    """Write directory/name atomically; False if the directory cannot take it (a cache that
    cannot be written only costs the compile next time)."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, directory / name)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True


def keep_bytecode_in(*directories: Path) -> None:
    """Keep the templates' compiled bytecode in `directories` (see _Bytecode; none: compile
    them in every process)."""
    current = env().bytecode_cache
    if not directories:
        env().bytecode_cache = None
    elif not isinstance(current, _Bytecode) or current.directories != directories:
        env().bytecode_cache = _Bytecode(directories)


@functools.cache
def env() -> jinja2.Environment:
    """Return the shared Environment: package loader, StrictUndefined, trim/lstrip blocks."""
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader("lucid.codegen", "templates"),
                jinja2.PrefixLoader(
                    {"gemm": jinja2.PackageLoader("lucid.codegen.gemm", "templates")}
                ),
            ]
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # C text, not HTML: escaping would corrupt `<` and `&`.
        autoescape=False,
    )


def render(template: str, **context: object) -> str:
    """Render one template (named as in this module's docstring) with plain-data context."""
    return env().get_template(template).render(**context)
