"""The pass memo: traced graph -> optimized graph(s), so a warm start runs no pass.

The warm-start index (_index.py) spares a warm process codegen and the C compiler, but it is
keyed on the *optimized* IR, so every first call still ran autodiff and the whole pass
pipeline (two thirds of a warm MobileNetV3 first call, 120 ms). This memo keys on what those
stages read instead: the traced graph's text with its source locations, the pipeline's pass
names, which inputs are differentiated (None for a forward-only entry) and a fingerprint of
lucid's own code (a changed pass must not be served its old output). It stores what they
produce: the optimized graph, or for a grad entry the autodiff result with both optimized
graphs, pickled in one piece so that values shared between them stay shared.

Files live in the index dir as `passes-<key>.pkl`: a line with the sha256 of the pickle, then
the pickle. A file whose digest does not match, that does not unpickle, or that holds
anything but what was asked for is a miss (and is rewritten), never a wrong graph. The
cache directory is already trusted with code (its .so files are mapped into the process);
the digest guards against damage, the cache's ownership checks (cache.py) against others.
"""

from __future__ import annotations

import contextlib
import copyreg
import hashlib
import io
import json
import logging
import os
import pickle
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import lucid
from lucid.ir.core import Graph, Value
from lucid.runtime import cache as _cache
from lucid.runtime._index import code_fingerprint

FORMAT = 1  # bump when the key's parts or the payload's layout change
PREFIX = "passes-"
SUFFIX = ".pkl"
_log = logging.getLogger("lucid")


def structure(graph: Graph) -> str:
    """Everything in `graph`, as text: each value numbered in definition order, each node's op,
    input numbers, attrs (in full, floats by repr: constants included), result types and
    source location (file, line, function), bodies nested. The printer's text holds the same
    but costs ~3x as much (it quotes names and prints the graph twice)."""
    number: dict[Value, int] = {}

    def define(values: tuple[Value, ...]) -> list[tuple[str, str | None]]:
        for v in values:
            number[v] = len(number)
        return [(repr(v.type), v.hint) for v in values]

    parts: list[Any] = [graph.name, define(graph.inputs), define(graph.params)]
    for node in graph.nodes:
        loc = node.loc
        parts.append(
            (
                node.op,
                [number[v] for v in node.inputs],
                repr(tuple(node.attrs.items())),
                define(node.results),
                None if loc is None else (loc.file, loc.line, loc.function, loc.column),
                None if node.body is None else structure(node.body),
            )
        )
    parts.append([number[v] for v in graph.outputs])
    return repr(parts)


def memo_key(traced: Graph, names: Sequence[str], wrt: Sequence[bool] | None) -> str:
    """sha256 over everything the autodiff and pass stages read for `traced`."""
    parts = {
        "format": FORMAT,
        "ir": structure(traced),
        "passes": list(names),
        "wrt": None if wrt is None else [bool(w) for w in wrt],
        "lucid": lucid.__version__,
        "code": code_fingerprint(),
        "pickle": pickle.HIGHEST_PROTOCOL,
        "python": sys.implementation.cache_tag,  # how the classes pickle may differ by version
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _path(root: Path, key: str) -> Path:
    return root / _cache.INDEX_DIR / f"{PREFIX}{key}{SUFFIX}"


def load(root: Path, key: str, kind: type) -> Any:
    """The memoized payload of `key` if present, intact and a `kind`; else None."""
    try:
        with open(_path(root, key), "rb") as f:
            digest, _, payload = f.read().partition(b"\n")
    except OSError:
        return None
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        if digest:
            _log.debug("pass memo %s: damaged (digest mismatch), recomputing", key[:12])
        return None
    try:
        value = pickle.loads(payload)
    except Exception as exc:  # noqa: BLE001 - an unreadable memo is a miss whatever the cause
        _log.debug("pass memo %s: unreadable (%s), recomputing", key[:12], exc)
        return None
    return value if isinstance(value, kind) else None


def read_only(items: dict[str, Any]) -> MappingProxyType[str, Any]:
    """Unpickling's constructor of Node attrs (see _Pickler)."""
    return MappingProxyType(items)


class _Pickler(pickle.Pickler):
    """Node attrs are read-only mappings (MappingProxyType), which pickle refuses: each is
    written as the dict it wraps and read back wrapped again (freeze_attrs' own form)."""

    dispatch_table = copyreg.dispatch_table.copy()
    dispatch_table[MappingProxyType] = lambda m: (read_only, (dict(m),))


def store(root: Path, key: str, value: Any) -> None:
    """Write the memo of `key` atomically; a failure to write costs the next start the passes,
    nothing else, so it is logged, not raised."""
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        _log.debug("pass memo not written (%s)", exc)
        return
    payload = buffer.getvalue()
    path = _path(root, key)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path.parent, 0o700)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        _log.warning("lucid: pass memo not written: %s", exc)
