"""`lucid-ir`, called in-process through main(argv) (one subprocess test at the end)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from lucid.cli import main
from lucid.ir import parse

SEED_IR = "graph @forward(%x: f32[1,3]) params(%fc1.weight: f32[5,3]"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(
        textwrap.dedent("""
        import lucid
        from lucid import nn

        class Small(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3, 2)

            def forward(self, x):
                return self.fc(x).relu()

        def make_small():
            return nn.Sequential(nn.Linear(3, 4), nn.Tanh())

        def needs_args(n):
            return Small()

        def not_a_model():
            return 42

        class NotAModule:
            pass

        class Branchy(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3, 2)

            def forward(self, x):
                y = self.fc(x)
                if y.sum() > 0:
                    y = -y
                return y * float(y.mean())
    """)
    )
    return path


# ---------------------------------------------------------------- trace


def test_trace_seed_matches_golden(capsys, golden) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "trace", "seed")
    assert code == 0 and not err
    golden("trace_cli_seed.lir", out)


def test_trace_symbolic_input_implies_dynamic_batch(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "trace", "seed", "--input", "Nx3")
    assert code == 0 and out.startswith("graph @forward(%x: f32[N,3])") and "f32[N,2]" in out
    code, out2, _ = run(capsys, "trace", "seed", "--input", "2x3", "--dynamic-batch")
    assert out2 == out


def test_trace_f64(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "trace", "seed", "--input", "Nx3", "--dtype", "f64")
    assert code == 0 and "f64[N,3]" in out and "f32" not in out


@pytest.mark.parametrize("name", ["Small", "make_small"])
def test_trace_file_targets(capsys, model_file: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "trace", f"{model_file}:{name}", "--input", "Nx3")
    assert code == 0, err
    assert parse(out).input_types[0].shape == ("N", 3)
    assert str(model_file.parent) not in sys.path  # loaded without touching sys.path


def test_trace_module_target_and_locs(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "trace", "lucid.cli:SeedModel", "--input", "1x3", "--locs")
    assert code == 0 and 'loc("' in out and "%fc1.weight" in out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing.py:Small", "no such file: missing.py"),
        ("{file}:Nope", "has no attribute 'Nope'"),
        ("{file}:NotAModule", "a function that returns an nn.Module, got the class NotAModule"),
        (
            "{file}:not_a_model",
            "expected not_a_model() to return an nn.Module, got an object of type int",
        ),
        ("{file}:needs_args", "needs_args cannot be called with no arguments"),
        ("no_such_pkg_xyz.mod:Name", "no module named 'no_such_pkg_xyz' in the current directory"),
    ],
)
def test_target_errors_are_clear(capsys, model_file: Path, target: str, message: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "trace", target.format(file=model_file), "--input", "1x3")
    assert code == 1 and not out
    assert err.startswith("lucid-ir: error: ") and message in err


def test_file_that_fails_to_run_is_reported(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    code, _, err = run(capsys, "trace", f"{bad}:M", "--input", "1x3")
    assert code == 1 and "error while running the file: RuntimeError: boom" in err


def test_wrong_input_shape_is_reported(capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "trace", "seed", "--input", "1x4")
    assert code == 1 and "running the model on inputs (1, 4) failed" in err


@pytest.mark.parametrize("spec", ["1xN", "3y", "1x3:f16"])
def test_bad_input_spec_is_a_usage_error(capsys, spec: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as info:
        main(["trace", "seed", "--input", spec])
    assert info.value.code == 2 and "bad --input" in capsys.readouterr().err


def test_trace_error_prints_one_located_line_per_problem(capsys, model_file: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "trace", f"{model_file}:Branchy", "--input", "1x3")
    lines = err.splitlines()
    assert code == 1 and not out
    assert lines[0] == "lucid-ir: error: cannot trace Branchy: 2 unsupported operation(s):"
    src = model_file.read_text().splitlines()
    bool_line = next(i for i, t in enumerate(src, 1) if "if y.sum() > 0" in t)
    float_line = next(i for i, t in enumerate(src, 1) if "float(y.mean())" in t)
    assert lines[1].startswith(f"{model_file}:{bool_line}: error: in Branchy: bool(Tensor)")
    assert lines[2].startswith(f"{model_file}:{float_line}: error: in Branchy: float(Tensor)")


# ---------------------------------------------------------------- formats and -o


def test_dot_format_and_output_file(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "seed.dot"
    code, out, _ = run(capsys, "trace", "seed", "--format", "dot", "-o", str(target))
    assert code == 0 and not out
    text = target.read_text()
    assert text.startswith('digraph "forward" {') and "hardswish" in text


def test_svg_without_graphviz_is_a_clear_error(capsys, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no `dot`
    code, out, err = run(capsys, "trace", "seed", "--format", "svg")
    assert code == 1 and not out and "needs Graphviz's `dot` program on PATH" in err


def test_svg_goes_through_dot(capsys, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = tmp_path / "dot"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\nsys.stdout.write('<svg>' + "
        "str(len(sys.stdin.read())) + ' ' + sys.argv[1] + '</svg>')\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    out_file = tmp_path / "g.svg"
    code, _, err = run(capsys, "trace", "seed", "--format", "svg", "-o", str(out_file))
    assert code == 0, err
    assert out_file.read_text().startswith("<svg>") and out_file.read_text().endswith("-Tsvg</svg>")
