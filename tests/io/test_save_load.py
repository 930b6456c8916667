"""lucid.save / lucid.load: round trips in both formats, PyTorch-written files, bad files."""

from __future__ import annotations

import builtins
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lucid
import lucid.io
from lucid import nn
from lucid.io import CheckpointError


def _obj() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "model": {"fc.weight": lucid.tensor(rng.standard_normal((3, 2)).astype(np.float32))},
        "f64": rng.standard_normal(4),
        "idx": np.arange(5, dtype=np.int64),
        "mask": np.array([True, False]),
        "step": 7,
        "lr": 0.25,
        "name": "run",
        "flag": False,
        "none": None,
        "state": {0: {"m": np.zeros(2)}, 1: [1, 2.5, "x"]},
    }


def _check(loaded: dict[str, Any], obj: dict[str, Any]) -> None:
    np.testing.assert_array_equal(loaded["model"]["fc.weight"], obj["model"]["fc.weight"].data)
    assert loaded["model"]["fc.weight"].dtype == np.float32
    for k in ("f64", "idx", "mask"):
        assert loaded[k].dtype == obj[k].dtype
        np.testing.assert_array_equal(loaded[k], obj[k])
    for k in ("step", "lr", "name", "flag", "none"):
        assert loaded[k] == obj[k] and type(loaded[k]) is type(obj[k])
    assert list(loaded["state"]) == [0, 1]
    np.testing.assert_array_equal(loaded["state"][0]["m"], np.zeros(2))
    assert loaded["state"][1] == [1, 2.5, "x"]


@pytest.fixture(params=["safetensors", "npz"])
def fmt(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "safetensors":
        pytest.importorskip("safetensors")
    else:
        real_import = builtins.__import__

        def no_safetensors(name: str, *args: Any, **kwargs: Any) -> Any:
            if name.startswith("safetensors"):
                raise ImportError(name)
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_safetensors)
    return request.param


def test_round_trip(tmp_path: Path, fmt: str) -> None:
    obj = _obj()
    path = tmp_path / "ckpt.bin"  # no telling extension: load detects the format
    lucid.save(obj, path)
    head = path.read_bytes()[:4]
    assert (head == b"PK\x03\x04") == (fmt == "npz")
    _check(lucid.load(path), obj)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]  # no temp file left


def test_module_save_round_trip(tmp_path: Path, fmt: str) -> None:
    lucid.random.seed(0)
    a = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    lucid.random.seed(1)
    b = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    a.save(tmp_path / "m")
    b.load_state_dict(lucid.load(tmp_path / "m"))
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)


def test_zero_dim_tensors_keep_their_shape(tmp_path: Path, fmt: str) -> None:
    """BatchNorm's num_batches_tracked is 0-d: saved as shape (1,) it would not load back."""
    lucid.random.seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model(lucid.randn(5, 3))
    model.save(tmp_path / "bn")
    loaded = lucid.load(tmp_path / "bn")
    assert loaded["1.num_batches_tracked"].shape == () and loaded["1.num_batches_tracked"] == 1
    model.load_state_dict(loaded)


def test_unsupported_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"'a.b'.*float16"):
        lucid.save({"a": {"b": np.zeros(2, np.float16)}}, tmp_path / "x")
    with pytest.raises(CheckpointError, match=r"set at 'a'"):
        lucid.save({"a": {1, 2}}, tmp_path / "x")
    assert not list(tmp_path.iterdir())


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c"
    lucid.save({"w": np.ones(3)}, path)
    before = path.read_bytes()

    def boom(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(lucid.io.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        lucid.save({"w": np.zeros(3)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def _st_file(path: Path, header: Any, data: bytes, hlen: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if hlen is None else hlen) + raw + data)
    return path


GOOD = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize(
    ("header", "data", "hlen", "message"),
    [
        (GOOD, b"\0" * 8, 10**15, "header length"),
        (GOOD, b"\0" * 7, None, r"says bytes \[0, 8\).*7 bytes"),
        (
            {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
            b"\0" * 8,
            None,
            "says bytes",
        ),
        (
            {"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 8]}},
            b"\0" * 8,
            None,
            "says bytes",
        ),
        ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "shape"),
        (
            {"w": {"dtype": "I8", "shape": [8], "data_offsets": [0, 8]}},
            b"\0" * 8,
            None,
            "unsupported dtype 'I8'",
        ),
        (
            {"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
            b"\0" * 8,
            None,
            "says bytes",
        ),
        ([1, 2], b"", None, "not a JSON object"),
        ({"w": 3}, b"", None, "not an object"),
        ({"__metadata__": {"lucid.structure": "{nope"}, **GOOD}, b"\0" * 8, None, "not valid JSON"),
        (
            {"__metadata__": {"lucid.structure": '{"__tensor__": "v"}'}, **GOOD},
            b"\0" * 8,
            None,
            "'v' is not in the file",
        ),
        (
            {"__metadata__": {"lucid.structure": '{"__dict__": {"a": 1}}'}, **GOOD},
            b"\0" * 8,
            None,
            "malformed",
        ),
    ],
)
def test_bad_safetensors_files(
    tmp_path: Path, header: Any, data: bytes, hlen: int | None, message: str
) -> None:
    path = _st_file(tmp_path / "bad", header, data, hlen)
    with pytest.raises(CheckpointError, match=message) as e:
        lucid.load(path)
    assert str(path) in str(e.value)


def test_bad_files(tmp_path: Path) -> None:
    lucid.save({"w": np.ones((4, 4))}, tmp_path / "good")
    good = (tmp_path / "good").read_bytes()
    for cut in (0, 3, 9, len(good) // 2, len(good) - 1):
        (tmp_path / "cut").write_bytes(good[:cut])
        with pytest.raises(CheckpointError, match="cut"):
            lucid.load(tmp_path / "cut")
    (tmp_path / "text").write_bytes(b"hello, this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="text"):
        lucid.load(tmp_path / "text")
    with pytest.raises(CheckpointError, match="cannot open"):
        lucid.load(tmp_path / "missing")


def test_npz_with_pickled_object_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "evil.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="evil.npz"):
        lucid.load(tmp_path / "evil.npz")


def test_truncated_npz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lucid.io, "_have_safetensors", lambda: False)
    lucid.save({"w": np.ones((64, 64))}, tmp_path / "n")
    good = (tmp_path / "n").read_bytes()
    (tmp_path / "n").write_bytes(good[: len(good) - 40])
    with pytest.raises(CheckpointError, match="not a readable .npz"):
        lucid.load(tmp_path / "n")


def test_reads_torch_safetensors_and_widens_half(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    t = {
        "a": torch.randn(3, 2),
        "b": torch.arange(4),
        "h": torch.tensor([1.5, -2.25], dtype=torch.float16),
        "bf": torch.tensor([1.5, -3.0e38], dtype=torch.bfloat16),
        "m": torch.tensor([True, False]),
    }
    st.save_file(t, str(tmp_path / "t.safetensors"))
    got = lucid.load(tmp_path / "t.safetensors")
    np.testing.assert_array_equal(got["a"], t["a"].numpy())
    assert got["b"].dtype == np.int64 and got["m"].dtype == np.bool_
    assert got["h"].dtype == np.float32 and got["bf"].dtype == np.float32
    np.testing.assert_array_equal(got["h"], t["h"].float().numpy())
    np.testing.assert_array_equal(got["bf"], t["bf"].float().numpy())
