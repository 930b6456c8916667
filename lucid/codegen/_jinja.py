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


class _Bytecode(jinja2.BytecodeCache):
    """Compiled templates kept in one directory, each file the sha256 of its payload then the
    payload (Jinja's bytecode, which itself names the template source's checksum and the Python
    version): a damaged or foreign file is a miss and is written again, never run."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, bucket: jinja2.bccache.Bucket) -> Path:
        return self.directory / f"{BYTECODE_PREFIX}{bucket.key}{BYTECODE_SUFFIX}"

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            data = self._path(bucket).read_bytes()
        except OSError:
            return
        digest, _, payload = data.partition(b"\n")
        if digest == hashlib.sha256(payload).hexdigest().encode():
            bucket.bytecode_from_string(payload)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        payload = bucket.bytecode_to_string()
        data = hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        try:  # a cache that cannot be written only costs the compile next time
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.directory)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self._path(bucket))
        except OSError:
            with contextlib.suppress(NameError, OSError):
                os.unlink(tmp)


def keep_bytecode_in(directory: Path | None) -> None:
    """Keep the templates' compiled bytecode in `directory` (None: compile them in every
    process). Compiling lucid's templates from source costs a new process ~0.25 s."""
    current = env().bytecode_cache
    if directory is None:
        env().bytecode_cache = None
    elif not isinstance(current, _Bytecode) or current.directory != directory:
        env().bytecode_cache = _Bytecode(directory)


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
