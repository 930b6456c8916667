"""Every `--help` of lucid-ir ends with examples, and each example runs as written (exit 0) in a
fresh directory holding the files the examples name: mymodel.py (class Net) and model.onnx."""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import lucid
from lucid.cli import COMMANDS, build_parser, main, seed_model
from tests.cli._models import MODULE


def help_texts() -> dict[str, str]:
    """The --help text of lucid-ir ("") and of each subcommand."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser.format_help()} | {n: p.format_help() for n, p in sub.choices.items()}


def examples(text: str) -> list[str]:
    """The command lines of a help text's `examples:` section."""
    section = text.split("\nexamples:\n", 1)[1]
    return [line.strip() for line in section.splitlines() if not line.strip().startswith("#")]


@pytest.fixture
def example_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A current directory with mymodel.py and model.onnx, and a compile cache of its own
    (`cache clear` is an example)."""
    (tmp_path / "mymodel.py").write_text(MODULE)
    if importlib.util.find_spec("onnx") is not None:
        lucid.onnx.export(seed_model(), (lucid.randn(1, 3),), tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LUCID_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path
    sys.modules.pop("mymodel", None)


def test_every_help_shows_examples() -> None:
    texts = help_texts()
    assert set(texts) == {"", *COMMANDS}
    for name, text in texts.items():
        assert examples(text), f"lucid-ir {name} --help shows no examples"


@pytest.mark.needs_cc
@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_each_example_runs_as_written(
    command: str, example_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for example in examples(help_texts()[command]):
        if "model.onnx" in example and not (example_dir / "model.onnx").exists():
            continue  # the onnx package is not installed
        for step in example.split(" && "):
            words = shlex.split(step)
            prog, argv = (words[:3], words[3:]) if words[0] == "python" else (words[:1], words[1:])
            assert prog in (["lucid-ir"], ["python", "-m", "lucid"]), step
            try:
                code = main(argv)
            except SystemExit as e:  # --help
                code = e.code
            assert code == 0, f"{step}: exit {code}\n{capsys.readouterr().err}"
            capsys.readouterr()
