"""`--model module:attr` (or TARGET module:attr): the module is imported from the current
directory as `python -m` would, attr may be a Module instance, a Module class or a factory, and
each way to get it wrong has its own message (a malformed spec is a usage error: exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import lucid
from lucid.cli import main
from lucid.ir import parse
from tests.cli._models import MODULE


@pytest.fixture
def in_model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh module in a temporary current directory; its name is unique to the test, since
    in-process imports are cached in sys.modules."""
    name = f"cli_model_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


@pytest.mark.parametrize("attr", ["net", "Net", "make"])
def test_model_from_the_current_directory_instance_class_or_factory(
    capsys: pytest.CaptureFixture[str], in_model_dir: str, attr: str
) -> None:
    path_before = list(sys.path)
    assert main(["trace", "--model", f"{in_model_dir}:{attr}", "--input", "Nx3"]) == 0
    graph = parse(capsys.readouterr().out)
    assert graph.input_types[0].shape == ("N", 3) and graph.output_types[0].shape == ("N", 2)
    assert sys.path == path_before  # the directory was on sys.path for the import only


def test_model_as_the_positional_target_and_as_a_file(
    capsys: pytest.CaptureFixture[str], in_model_dir: str
) -> None:
    assert main(["trace", f"{in_model_dir}:make", "--input", "1x3"]) == 0
    by_module = capsys.readouterr().out
    assert main(["trace", "--model", f"{in_model_dir}.py:make", "--input", "1x3"]) == 0
    assert capsys.readouterr().out == by_module


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("nope", "has no attribute 'nope'; its models: Net, net"),
        (
            "Plain",
            "a function that returns an nn.Module, got the class Plain",
        ),
        ("answer", "got an object of type int"),
        (
            "make_sized",
            "make_sized cannot be called with no arguments (missing a required argument: 'n')",
        ),
    ],
)
def test_wrong_attr_is_named_with_what_was_expected(
    capsys: pytest.CaptureFixture[str], in_model_dir: str, attr: str, message: str
) -> None:
    assert main(["trace", "--model", f"{in_model_dir}:{attr}", "--input", "1x3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lucid-ir: error: ") and message in err, err


def test_missing_module_names_the_directory_searched(
    capsys: pytest.CaptureFixture[str], in_model_dir: str
) -> None:
    assert main(["trace", "--model", "no_such_module_here:Net", "--input", "1x3"]) == 1
    err = capsys.readouterr().err
    assert f"no module named 'no_such_module_here' in the current directory ({os.getcwd()})" in err


def test_a_failing_import_inside_the_module_is_not_called_missing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cli_model_broken_import.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    assert main(["trace", "--model", "cli_model_broken_import:Net", "--input", "1x3"]) == 1
    err = capsys.readouterr().err
    assert "importing 'cli_model_broken_import' failed: ModuleNotFoundError: " in err
    assert "no_such_dependency_xyz" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--model", "justaname"],
            "or path/to/file.py:attr (attr a Python name), got 'justaname'",
        ),
        (["--model", "pkg:"], "got 'pkg:'"),
        (["seed", "--model", "m:Net"], "expected the model once, as TARGET or --model, got both"),
        (
            ["--model", "x.onnx"],
            "--model expects module:attr or path/to/file.py:attr, got 'x.onnx'",
        ),
        ([], "expected a TARGET or --model module:attr, got neither"),
    ],
)
def test_bad_model_specs_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["trace", *argv, "--input", "1x3"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "usage: lucid-ir trace" in err and message in err, err


def test_console_script_imports_from_the_current_directory(tmp_path: Path) -> None:
    """The console script's sys.path[0] is its bin directory, not the current directory."""
    (tmp_path / "cli_model_script.py").write_text(MODULE)
    root = str(Path(lucid.__file__).parent.parent)
    code = "import sys; from lucid.cli import main; sys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", code, "trace", "--model", "cli_model_script:net", "--input", "1x3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": root, "PYTHONSAFEPATH": "1"},  # -c adds no ''
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("graph @forward(%x: f32[1,3])")
