"""`lucid-ir import MODEL.onnx` and ONNX files as targets of `lucid-ir export`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from lucid.cli import main
from lucid.onnx import load

from .test_import import mlp


@pytest.fixture
def mlp_file(tmp_path: Path) -> Path:
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp()[0], str(path))
    return path


def test_import_prints_the_traced_ir(mlp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(mlp_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("graph @forward(%x: f32[N,3]) params(%fc1_weight: f32[5,3]")
    assert "hardswish" in out and out.count("= linear ") == 2
    assert main(["trace", str(mlp_file)]) == 0  # the same text as `trace` on the file
    assert capsys.readouterr().out == out


def test_import_errors_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "lucid-ir: error:" in err and "not an ONNX model" in err
    assert main(["import", str(tmp_path / "absent.onnx")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_import_refuses_input_shapes(mlp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a usage error (exit 2): `import` has no --input, and the other commands refuse it for
    # an ONNX target, whose input shapes come from the file
    with pytest.raises(SystemExit) as info:
        main(["import", str(mlp_file), "--input", "2x3"])
    assert info.value.code == 2 and "unrecognized arguments: --input" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["trace", str(mlp_file), "--input", "2x3", "--dtype", "f64"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "an ONNX model declares its own input types; --input 2x3 and --dtype f64" in err


@pytest.mark.needs_cc
def test_export_builds_a_library_from_an_onnx_file(
    mlp_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lucid.runtime.loader import load as load_library

    stem = tmp_path / "out" / "mlp"
    stem.parent.mkdir()
    assert main(["export", str(mlp_file), "-o", str(stem)]) == 0
    written = capsys.readouterr().out.split()
    assert written[:2] == [str(stem) + ".so", str(stem) + ".h"]
    assert "mlp_run" in (tmp_path / "out" / "mlp.h").read_text()
    lib = load_library(str(stem) + ".so")
    x = np.random.default_rng(1).standard_normal((7, 3)).astype(np.float32)
    np.testing.assert_allclose(lib(x), load(mlp_file)(x).data, rtol=1e-5, atol=1e-6)


@pytest.mark.needs_cc
def test_export_into_a_directory_names_the_files_after_the_model(
    mlp_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "build"
    assert main(["export", str(mlp_file), "-o", f"{out}/"]) == 0
    written = capsys.readouterr().out.split()
    assert written[:2] == [str(out / "mlp.so"), str(out / "mlp.h")]
    assert (out / "mlp.so").is_file() and (out / "mlp.h").is_file()
