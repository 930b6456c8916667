"""lucid.save / lucid.load: checkpoints as safetensors (or .npz), never pickle.

A checkpoint holds tensors plus a JSON description of the structure around them (nested
dicts and lists, numbers, strings, bools, None). With the optional `safetensors` package the
file is a safetensors file whose `__metadata__` carries the JSON under "lucid.structure";
without it, an .npz whose "__lucid_structure__" entry holds the JSON as uint8 bytes. `load`
tells the two apart by their first bytes, and also reads plain safetensors files written by
other tools (PyTorch's `safetensors.torch.save_file`), which load as a flat name -> array dict.

The safetensors reader is lucid's own: it checks every offset and size against the file before
reading, so a damaged or hostile file raises `CheckpointError` naming the path.
dtypes: float32, float64, int64 and bool are kept; float16 and bfloat16 tensors from other
tools are widened to float32 (exactly: every such value is a float32 value); other dtypes are
an error.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zipfile
from typing import Any

import numpy as np

from lucid.errors import LucidError

_STRUCT_KEY = "lucid.structure"
_NPZ_STRUCT = "__lucid_structure__"
_SAVED_DTYPES = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64), np.dtype(bool)}
_ST_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "BOOL": np.dtype(bool),
}
_ST_WIDENED: dict[str, np.dtype[Any]] = {"F16": np.dtype("<f2")}  # BF16 handled by hand below
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


class CheckpointError(LucidError, ValueError):
    """A checkpoint file could not be written or read; the message names the path."""


def _have_safetensors() -> bool:
    try:
        import safetensors.numpy  # noqa: F401
    except ImportError:
        return False
    return True


def _as_array(value: Any, where: str) -> np.ndarray:
    from lucid.tensor import Tensor

    if isinstance(value, Tensor):
        arr = value.data
    elif hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        arr = value.detach().cpu().numpy()  # a torch tensor, without importing torch
    else:
        arr = value
    arr = np.asarray(arr)
    if arr.dtype not in _SAVED_DTYPES:
        raise CheckpointError(
            f"lucid.save: {where} has dtype {arr.dtype}; supported: float32, float64, int64, bool"
        )
    # not np.ascontiguousarray: it turns a 0-d array (BatchNorm's num_batches_tracked) into
    # shape (1,), which then no longer loads into the model
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _is_tensor(value: Any) -> bool:
    from lucid.tensor import Tensor

    return isinstance(value, (Tensor, np.ndarray)) or (
        hasattr(value, "detach") and hasattr(value, "numpy")
    )


def _flatten(obj: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """Split `obj` into a JSON structure (tensors replaced by {"__tensor__": name}) and tensors."""
    tensors: dict[str, np.ndarray] = {}

    def walk(value: Any, path: str) -> Any:
        if _is_tensor(value):
            name = path or "tensor"
            while name in tensors:
                name += "_"
            tensors[name] = _as_array(value, repr(path or "<root>"))
            return {"__tensor__": name}
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
            return value.item() if isinstance(value, np.generic) else value
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise CheckpointError(
                        f"lucid.save: dict key {k!r} at {path!r} is not str or int"
                    )
                out[str(k)] = walk(v, f"{path}.{k}" if path else str(k))
            keys = [type(k).__name__ for k in value]
            return {"__dict__": out, "__keys__": keys}
        if isinstance(value, (list, tuple)):
            items = [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
            return {"__list__": items, "__tuple__": isinstance(value, tuple)}
        raise CheckpointError(
            f"lucid.save: cannot save a {type(value).__name__} at {path or '<root>'!r}; "
            "supported: tensors, arrays, dicts, lists, numbers, strings, bools, None"
        )

    return walk(obj, ""), tensors


def _unflatten(node: Any, tensors: dict[str, np.ndarray], path: str) -> Any:
    def bad(msg: str) -> CheckpointError:
        return CheckpointError(f"lucid.load: {path}: malformed structure metadata: {msg}")

    def walk(value: Any) -> Any:
        if value is None or isinstance(value, (bool, str, int, float)):
            return value
        if not isinstance(value, dict):
            raise bad(f"unexpected {type(value).__name__}")
        if "__tensor__" in value:
            name = value["__tensor__"]
            if not isinstance(name, str) or name not in tensors:
                raise bad(f"tensor {name!r} is not in the file")
            return tensors[name]
        if "__list__" in value:
            items = value["__list__"]
            if not isinstance(items, list):
                raise bad("__list__ is not a list")
            out = [walk(v) for v in items]
            return tuple(out) if value.get("__tuple__") is True else out
        if "__dict__" in value:
            d, keys = value["__dict__"], value.get("__keys__")
            if not isinstance(d, dict) or not isinstance(keys, list) or len(keys) != len(d):
                raise bad("__dict__/__keys__ do not match")
            result: dict[Any, Any] = {}
            for (k, v), kind in zip(d.items(), keys, strict=True):
                if kind == "int":
                    try:
                        key: Any = int(k)
                    except ValueError:
                        raise bad(f"key {k!r} marked int") from None
                else:
                    key = k
                result[key] = walk(v)
            return result
        raise bad(f"unknown node with keys {sorted(value)}")

    # Nesting is bounded by JSON's own parser; structures saved by lucid are shallow.
    return walk(node)


def _atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".lucid-save-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write `obj` (tensors in nested dicts/lists with numbers, strings, None) to `path` atomically."""
    structure, tensors = _flatten(obj)
    meta = json.dumps(structure)
    if _have_safetensors():
        from safetensors.numpy import save as st_save

        data = st_save(tensors, metadata={_STRUCT_KEY: meta})
    else:
        import io

        buf = io.BytesIO()
        entries = dict(tensors)
        if _NPZ_STRUCT in entries:
            raise CheckpointError(f"lucid.save: the name {_NPZ_STRUCT!r} is reserved")
        entries[_NPZ_STRUCT] = np.frombuffer(meta.encode(), dtype=np.uint8)
        np.savez(buf, **entries)  # type: ignore[arg-type]
        data = buf.getvalue()
    _atomic_write(path, data)


def load(path: str | os.PathLike[str]) -> Any:
    """Read a checkpoint written by `save` (safetensors or .npz) or any plain safetensors file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise CheckpointError(f"lucid.load: cannot open {path}: {e.strerror}") from None
    if head[:4] == b"PK\x03\x04":
        tensors, meta = _read_npz(path)
    else:
        tensors, meta = _read_safetensors(path)
    if meta is None:
        return tensors
    try:
        structure = json.loads(meta)
    except (json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"lucid.load: {path}: structure metadata is not valid JSON") from None
    return _unflatten(structure, tensors, path)


def _read_npz(path: str) -> tuple[dict[str, np.ndarray], str | None]:
    try:
        with np.load(path, allow_pickle=False) as z:
            tensors = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise CheckpointError(
            f"lucid.load: {path} is not a readable .npz checkpoint: {e}"
        ) from None
    meta = None
    if _NPZ_STRUCT in tensors:
        raw = tensors.pop(_NPZ_STRUCT)
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise CheckpointError(f"lucid.load: {path}: {_NPZ_STRUCT} is not a byte string")
        try:
            meta = raw.tobytes().decode()
        except UnicodeDecodeError:
            raise CheckpointError(f"lucid.load: {path}: structure metadata is not UTF-8") from None
    for k, arr in tensors.items():
        if arr.dtype not in _SAVED_DTYPES:
            raise CheckpointError(
                f"lucid.load: {path}: tensor {k!r} has unsupported dtype {arr.dtype}"
            )
    return tensors, meta


def _read_safetensors(path: str) -> tuple[dict[str, np.ndarray], str | None]:
    def bad(msg: str) -> CheckpointError:
        return CheckpointError(f"lucid.load: {path} is not a valid checkpoint: {msg}")

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad("shorter than a safetensors header (wrong magic / truncated)")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > _MAX_HEADER or 8 + n > size:
            raise bad(f"header length {n} does not fit the file of {size} bytes (wrong magic?)")
        raw = f.read(n)
        try:
            header = json.loads(raw.decode())
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise bad("header is not JSON") from None
        if not isinstance(header, dict):
            raise bad("header is not a JSON object")
        meta_map = header.pop("__metadata__", None)
        if meta_map is not None and not isinstance(meta_map, dict):
            raise bad("__metadata__ is not a string map")
        data_len = size - 8 - n
        tensors: dict[str, np.ndarray] = {}
        for name, info in header.items():
            if not isinstance(info, dict):
                raise bad(f"entry {name!r} is not an object")
            dtype_name, shape, offsets = (
                info.get("dtype"),
                info.get("shape"),
                info.get("data_offsets"),
            )
            if not (
                isinstance(shape, list)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            ):
                raise bad(f"tensor {name!r} has shape {shape!r}")
            if not (
                isinstance(offsets, list)
                and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            ):
                raise bad(f"tensor {name!r} has data_offsets {offsets!r}")
            begin, end = offsets
            if dtype_name in _ST_DTYPES:
                dt = _ST_DTYPES[dtype_name]
            elif dtype_name in _ST_WIDENED:
                dt = _ST_WIDENED[dtype_name]
            elif dtype_name == "BF16":
                dt = np.dtype("<u2")
            else:
                raise bad(
                    f"tensor {name!r} has unsupported dtype {dtype_name!r} (supported: F32, F64, I64, BOOL; F16/BF16 become float32)"
                )
            count = int(np.prod(shape, dtype=object)) if shape else 1
            if not 0 <= begin <= end <= data_len or end - begin != count * dt.itemsize:
                raise bad(
                    f"tensor {name!r} of shape {shape} and dtype {dtype_name} says bytes [{begin}, {end}) "
                    f"but the data section has {data_len} bytes"
                )
            f.seek(8 + n + begin)
            buf = f.read(end - begin)
            if len(buf) != end - begin:
                raise bad(f"tensor {name!r} is truncated")
            arr = np.frombuffer(buf, dtype=dt).reshape(shape)
            if dtype_name == "BF16":
                # bfloat16 is the top half of a float32: shifting the bits back is exact.
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            elif dtype_name == "BOOL" and arr.size and np.frombuffer(buf, np.uint8).max() > 1:
                raise bad(f"tensor {name!r} has bool bytes other than 0 and 1")
            arr = arr.astype(np.float32) if dtype_name in _ST_WIDENED else arr
            tensors[name] = np.array(arr, dtype=arr.dtype.newbyteorder("="))
    meta = None
    if meta_map is not None:
        meta = meta_map.get(_STRUCT_KEY)
        if meta is not None and not isinstance(meta, str):
            raise bad(f"{_STRUCT_KEY} metadata is not a string")
    return tensors, meta
