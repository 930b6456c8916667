"""An exported model called from a C program: results, threads, every error code, valgrind."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lucid.runtime.aot import export
from tests.models import seed_model

from ._helpers import (
    ATOL,
    RTOL,
    CrossEntropyModel,
    build_caller,
    eager,
    parse_outputs,
    return_codes,
    run_caller,
    write_inputs,
)

pytestmark = pytest.mark.needs_cc
BATCHES = [257, 1, 3, 7, 64]  # the first one also runs from two threads at once


def _seed_inputs(tmp: Path) -> tuple[Path, list[np.ndarray]]:
    rng = np.random.default_rng(1)
    xs = [(rng.standard_normal((b, 3)) * 4).astype(np.float32) for b in BATCHES]
    path = tmp / "inputs.bin"
    write_inputs(path, [[x] for x in xs])
    return path, xs


def _check_against_eager(stdout: str, model: object, xs: list[np.ndarray]) -> None:
    outs = parse_outputs(stdout)
    assert sorted(outs) == sorted((b, 0) for b in BATCHES)
    for b, x in zip(BATCHES, xs):
        want = eager(model, x)  # type: ignore[arg-type]
        np.testing.assert_allclose(outs[(b, 0)].reshape(want.shape), want, rtol=RTOL, atol=ATOL)


def test_embedded_from_c_matches_eager_at_several_batches(seed_exports, tmp_path: Path) -> None:
    result = seed_exports["embedded"]
    exe = build_caller(result, tmp_path)
    inputs, xs = _seed_inputs(tmp_path)
    stdout = run_caller([str(exe), str(inputs), "--threads", *map(str, BATCHES)])
    assert "input 0 x 0 -1,3" in stdout and "output 0 output0 0 -1,2" in stdout
    assert "embedded 1" in stdout and "threads ok" in stdout
    _check_against_eager(stdout, seed_model(), xs)


def test_file_weights_from_c_and_bad_weights_files(seed_exports, tmp_path: Path) -> None:
    result = seed_exports["file"]
    assert result.weights is not None and result.weights.name == "seed-file.weights"
    good = result.weights.read_bytes()
    bad = {
        "flipped.weights": good[:100] + bytes([good[100] ^ 1]) + good[101:],  # CRC mismatch
        "short.weights": good[:-1],
        "long.weights": good + b"\0",
        "header.weights": good[:10],
        "magic.weights": b"X" + good[1:],
        "other.weights": good[:16] + bytes(8) + good[24:],  # another model's fingerprint
    }
    args = []
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        args += ["--bad-weights", str(tmp_path / name)]
    exe = build_caller(result, tmp_path)
    inputs, xs = _seed_inputs(tmp_path)
    stdout = run_caller(
        [
            str(exe),
            str(inputs),
            "--weights",
            str(result.weights),
            *args,
            "--threads",
            *map(str, BATCHES),
        ]
    )
    assert "embedded 0" in stdout and stdout.count("bad-weights") == len(bad)
    _check_against_eager(stdout, seed_model(), xs)


def test_class_index_out_of_range_is_an_error_code(tmp_path: Path) -> None:
    import lucid

    model = CrossEntropyModel()
    x = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    good = np.array([0, 3, 1, 2, 0], np.int64)
    bad = np.array([0, 4, 1, 2, 0], np.int64)
    result = export(model, (lucid.tensor(x), lucid.tensor(good)), tmp_path / "ce")
    exe = build_caller(result, tmp_path)
    # batch 5 with good targets, then batch 4 (the first four rows) with an out-of-range one
    write_inputs(tmp_path / "in.bin", [[x, good], [x[:4], bad[:4]]])
    stdout = run_caller([str(exe), str(tmp_path / "in.bin"), "5", "4"])
    index_code = int(stdout.split("INDEX=")[1].split()[0])
    assert return_codes(stdout) == {5: 0, 4: index_code}
    assert "index input is out of range" in stdout
    np.testing.assert_allclose(
        parse_outputs(stdout)[(5, 0)], eager(model, x, good).reshape(-1), rtol=RTOL, atol=ATOL
    )


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
@pytest.mark.parametrize("mode", ["embedded", "file"])
@pytest.mark.slow
def test_valgrind_memcheck_clean(seed_exports, tmp_path: Path, mode: str) -> None:
    result = seed_exports[mode]
    exe = build_caller(result, tmp_path)
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((b, 3)).astype(np.float32) for b in (33, 1, 4)]
    write_inputs(tmp_path / "in.bin", [[x] for x in xs])
    weights = ["--weights", str(result.weights)] if result.weights else []
    (tmp_path / "bad.weights").write_bytes(b"LUCIDWTS" + bytes(100))
    stdout = run_caller(
        [
            str(exe),
            str(tmp_path / "in.bin"),
            *weights,
            "--bad-weights",
            str(tmp_path / "bad.weights"),
            "--threads",
            "33",
            "1",
            "4",
        ],
        prefix=(
            "valgrind",
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=all",
            "--quiet",
        ),
    )
    assert parse_outputs(stdout)[(33, 0)].shape == (66,)
