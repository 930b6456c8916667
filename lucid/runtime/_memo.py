"""The pass memo: traced graph -> optimized graph(s), so a warm start runs no pass.

The warm-start index (_index.py) spares a warm process codegen and the C compiler, but it is
keyed on the *optimized* IR, so every first call still ran autodiff and the whole pass
pipeline (two thirds of a warm MobileNetV3 first call, 120 ms). This memo keys on what those
stages read instead: the traced graph's text with its source locations, the pipeline's pass
names, which inputs are differentiated (None for a forward-only entry) and a fingerprint of
lucid's own code (a changed pass must not be served its old output). It stores what they
produce: the optimized graph, or for a grad entry both optimized graphs with the conventions
that join them (_gradplan.GradJoin: not the autodiff graphs themselves, which `stages()`
recomputes when asked), pickled in one piece so that values shared between them stay shared.

Files live in the index dir as `passes-<key>.pkl`: a line with the sha256 of the pickle, then
the pickle. A file whose digest does not match, that does not unpickle, or that holds
anything but what was asked for is a miss (and is rewritten), never a wrong graph. The
cache directory is already trusted with code (its .so files are mapped into the process);
the digest guards against damage, the cache's ownership checks (cache.py) against others.

The same directory keeps the code objects of generated Python (`compiled_code`), in files of
the same form: `code-<key>.marshal`.
"""

from __future__ import annotations

import builtins
import contextlib
import copyreg
import hashlib
import io
import json
import marshal
import os
import pickle
import sys
from collections.abc import Sequence
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from types import CodeType, MappingProxyType
from typing import Any

import lucid
from lucid._logging import log as _log
from lucid.errors import SourceLoc
from lucid.ir.core import Graph, Node, Value
from lucid.ir.types import Dim, DType, TensorType
from lucid.runtime import cache as _cache
from lucid.runtime._index import code_fingerprint

FORMAT = 3  # bump when the key's parts or the payload's layout change
PREFIX = "passes-"
SUFFIX = ".pkl"


def structure(graph: Graph) -> str:
    """Everything in `graph`, as text: each value numbered in definition order, each node's op,
    input numbers, attrs (in full, floats by repr: constants included), result types and
    source location (file, line, function), bodies nested. The printer's text holds the same
    but costs ~3x as much (it quotes names and prints the graph twice)."""
    number: dict[Value, int] = {}
    # each distinct type's text once: a graph has a few dozen types among ~a thousand values
    texts: dict[TensorType, str] = {}

    def text(t: TensorType) -> str:
        known = texts.get(t)
        if known is None:
            known = texts[t] = repr(t)
        return known

    def define(values: tuple[Value, ...]) -> list[tuple[str, str | None]]:
        for v in values:
            number[v] = len(number)
        return [(text(v.type), v.hint) for v in values]

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


def _read(path: Path, what: str) -> bytes | None:
    """The payload of a memo file if it is present and its digest matches; else None."""
    try:
        with open(path, "rb") as f:
            digest, _, payload = f.read().partition(b"\n")
    except OSError:
        return None
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        if digest:
            _log.debug("%s %s: damaged (digest mismatch), recomputing", what, path.name)
        return None
    return payload


def load(root: Path, key: str, kind: type) -> Any:
    """The memoized payload of `key` if present, intact and a `kind`; else None."""
    payload = _read(_path(root, key), "pass memo")
    if payload is None:
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


_new = object.__new__
_set = object.__setattr__  # the frozen classes' own way of setting a field


def value(type: TensorType, hint: str | None) -> Value:
    """Unpickling's constructor of a Value (see _Pickler)."""
    v = _new(Value)
    _set(v, "type", type)
    _set(v, "hint", hint)
    return v


def node(
    op: str,
    inputs: tuple[Value, ...],
    attrs: MappingProxyType[str, Any],
    results: tuple[Value, ...],
    loc: SourceLoc | None,
    body: Graph | None,
) -> Node:
    """Unpickling's constructor of a Node (see _Pickler)."""
    n = _new(Node)
    _set(n, "op", op)
    _set(n, "inputs", inputs)
    _set(n, "attrs", attrs)
    _set(n, "results", results)
    _set(n, "loc", loc)
    _set(n, "body", body)
    return n


def tensor_type(dtype: DType, shape: tuple[Dim, ...]) -> TensorType:
    """Unpickling's constructor of a TensorType (see _Pickler)."""
    t = _new(TensorType)
    _set(t, "dtype", dtype)
    _set(t, "shape", shape)
    return t


class _Pickler(pickle.Pickler):
    """Node attrs are read-only mappings (MappingProxyType), which pickle refuses: each is
    written as the dict it wraps and read back wrapped again (freeze_attrs' own form).

    Value, Node and TensorType (thousands of each in a training memo) are written as their
    fields and read back by the functions above, which set the fields without a dataclass's
    per-object `fields()` walk or the constructors' checks: the objects were checked when they
    were made, and the payload's digest is checked before it is read. A GPT training memo
    (2264 Values, 1557 Nodes, 765 types) unpickles in 4.3 ms instead of 9.1 (AMD EPYC)."""

    dispatch_table = copyreg.dispatch_table.copy()
    dispatch_table[MappingProxyType] = lambda m: (read_only, (dict(m),))
    dispatch_table[Value] = lambda v: (value, (v.type, v.hint))
    dispatch_table[Node] = lambda n: (node, (n.op, n.inputs, n.attrs, n.results, n.loc, n.body))
    dispatch_table[TensorType] = lambda t: (tensor_type, (t.dtype, t.shape))


def store(root: Path, key: str, value: Any) -> None:
    """Write the memo of `key` atomically; a failure to write costs the next start the passes,
    nothing else, so it is logged, not raised."""
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        _log.debug("pass memo not written (%s)", exc)
        return
    _write(_path(root, key), buffer.getvalue(), "pass memo")


def _write(path: Path, payload: bytes, what: str) -> None:
    """Write a memo file atomically: the sha256 of `payload`, a newline, `payload`. A failure
    is logged, not raised: it costs the next start the work the file would have saved."""
    import tempfile  # here, not at the top: a warm start only reads memos

    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path.parent, 0o700)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        _log.warning("lucid: %s not written: %s", what, exc)


CODE_PREFIX = "code-"
CODE_SUFFIX = ".marshal"


def _code_path(root: Path, key: str) -> Path:
    """The file of the code memo `key`."""
    return root / _cache.INDEX_DIR / f"{CODE_PREFIX}{key}{CODE_SUFFIX}"


def compiled_code(root: Path | None, source: str, filename: str) -> CodeType:
    """`compile(source, filename, "exec")`, its code object kept in the index dir of `root`
    (None: not kept) as `code-<key>.marshal`, the key the sha256 of the interpreter's bytecode
    magic, `filename` and `source`. A compiled module's generated fast path (_fastpath.py) is
    ~1000 lines for MobileNetV3 (five per parameter): compiling it cost a warm start 6-12 ms,
    loading its code 0.2 ms. A file that is damaged or does not unmarshal to a code object of
    that name is a miss, and is written again."""
    if root is None:
        return builtins.compile(source, filename, "exec")
    text = MAGIC_NUMBER + filename.encode() + b"\0" + source.encode()
    path = _code_path(root, hashlib.sha256(text).hexdigest())
    payload = _read(path, "code memo")
    if payload is not None:
        try:
            code = marshal.loads(payload)
        except (EOFError, ValueError, TypeError):
            code = None
        if isinstance(code, CodeType) and code.co_filename == filename:
            return code
    code = builtins.compile(source, filename, "exec")
    _write(path, marshal.dumps(code), "code memo")
    return code
