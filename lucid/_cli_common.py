"""What the `lucid-ir` subcommand modules share: the command table, the built-in seed model,
loading a target or a .lir file, random inputs, and writing the result.

lucid/cli.py (the IR commands and `main`) and lucid/_cli_compile.py (the commands that go
through the C compiler) both build on this module; neither imports the other's internals.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import lucid
from lucid import nn
from lucid.nn import Module

SEED_INPUT = [[0.5, -1.2, 3.3]]  # the seed page's example input


class CLIError(Exception):
    """A user-facing failure with an optional `file:line` location."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, argument setup and the function that runs it."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class CommandTable:
    """The subcommands one module defines, in definition order (cli.py joins the tables)."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def command(
        self,
        name: str,
        help: str,
        arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None,
    ) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
        """Decorator: add `run(args) -> exit code` as subcommand `name`."""

        def register(
            run: Callable[[argparse.Namespace], int],
        ) -> Callable[[argparse.Namespace], int]:
            if name in self.commands:
                raise ValueError(f"subcommand {name!r} is already defined")
            self.commands[name] = Command(name, help, arguments, run)
            return run

        return register


# ---------------------------------------------------------------- targets and inputs


class SeedModel(Module):
    """The seed page's NeuralNetwork: fc1 = Linear(3, 5) -> HardSwish -> fc2 = Linear(5, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 5)
        self.hardswish = nn.HardSwish()
        self.fc2 = nn.Linear(5, 2)

    def forward(self, x: Any) -> Any:
        """fc2(hardswish(fc1(x)))."""
        return self.fc2(self.hardswish(self.fc1(x)))


def seed_model() -> SeedModel:
    """The seed model with the weights lucid.random.seed(0) gives."""
    lucid.random.seed(0)
    return SeedModel()


BUILTINS: dict[str, tuple[Callable[[], Any], list[str]]] = {"seed": (seed_model, ["1x3"])}


def load_target(target: str) -> Any:
    """The Module named by `seed`, `path/file.py:Name` or `package.module:Name`."""
    if target in BUILTINS:
        return BUILTINS[target][0]()
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        raise CLIError(
            f"target {target!r} is not 'seed', 'path/to/file.py:Name' or 'package.module:Name'"
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        namespace = _load_file(Path(where))
    else:
        try:
            namespace = importlib.import_module(where)
        except ImportError as e:
            raise CLIError(f"cannot import module {where!r}: {e}") from None
    if not hasattr(namespace, name):
        raise CLIError(f"{where} has no attribute {name!r}")
    obj = getattr(namespace, name)
    if isinstance(obj, type) and not issubclass(obj, Module):
        raise CLIError(f"{target}: {name} is a class but not an nn.Module")
    if not callable(obj):
        raise CLIError(f"{target}: {name} is neither an nn.Module class nor a factory function")
    try:
        model = obj()
    except TypeError as e:
        raise CLIError(f"{target}: cannot call {name}() with no arguments: {e}") from None
    if not isinstance(model, Module):
        raise CLIError(f"{target}: {name}() returned {type(model).__name__}, not an nn.Module")
    return model


def _load_file(path: Path) -> Any:
    """Execute a Python file as a fresh module, without touching sys.path."""
    if not path.is_file():
        raise CLIError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"_lucid_target_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001  (any failure of the user's file: one line, no traceback)
        raise CLIError(f"{path}: error while running the file: {type(e).__name__}: {e}") from None
    return module


_INPUT_RE = re.compile(r"(?P<shape>[A-Za-z_0-9x]*?)(?::(?P<dtype>f32|f64|i64|bool))?\Z")


def parse_input(spec: str) -> tuple[tuple[int | str, ...], str | None]:
    """`1x3` -> ((1, 3), None); `Nx3` -> (("N", 3), None); `N:i64` -> (("N",), "i64")."""
    bad = CLIError(
        f"bad --input {spec!r}: expected dims like 1x3 or Nx3 (only the first dim may be a "
        "symbol), optionally followed by :f32, :f64, :i64 or :bool"
    )
    m = _INPUT_RE.match(spec)
    if m is None:
        raise bad
    dims = m.group("shape").split("x") if m.group("shape") else []  # "" is a scalar
    shape: list[int | str] = []
    for i, d in enumerate(dims):
        if d.isdigit():
            shape.append(int(d))
        elif i == 0 and re.fullmatch(r"[A-Za-z_]\w*", d):
            shape.append(d)
        else:
            raise bad
    return tuple(shape), m.group("dtype")


def random_array(shape: tuple[int, ...], dtype: np.dtype[Any], rng: np.random.Generator) -> Any:
    """Random data of `dtype`: normal floats, small non-negative ints, coin-flip bools."""
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, 2, shape).astype(dtype)


def traced_target(args: argparse.Namespace) -> tuple[Any, Any]:
    """(model, graph): the target traced on random inputs shaped by --input."""
    from lucid.ir import trace
    from lucid.tensor import Tensor

    if is_onnx(args.target):
        return onnx_target(args)
    model = load_target(args.target)
    specs = args.input or BUILTINS.get(args.target, (None, []))[1]
    if not specs:
        raise CLIError(f"{args.target}: give the input shapes with --input, e.g. --input Nx3")
    float_dtype = np.dtype(np.float64 if args.dtype == "f64" else np.float32)
    if float_dtype == np.float64:
        for p in model.parameters():  # the model is ours (made just now): widen it in place
            p.data = p.data.astype(np.float64)
    rng = np.random.default_rng(args.seed)
    inputs, dynamic = [], args.dynamic_batch
    for spec in specs:
        shape, dt = parse_input(spec)
        dynamic = dynamic or any(isinstance(d, str) for d in shape)
        concrete = tuple(args.batch if isinstance(d, str) else d for d in shape)
        inputs.append(Tensor(random_array(concrete, np.dtype(dt and _NP[dt] or float_dtype), rng)))
    if args.target == "seed" and not args.input:
        inputs = [Tensor(np.array(SEED_INPUT, float_dtype))]
    try:
        return model, trace(model, *inputs, dynamic_batch=dynamic)
    except (ValueError, TypeError) as e:  # e.g. Linear's check of the input's last dim
        shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
        raise CLIError(f"{args.target}: running the model on inputs {shapes} failed: {e}") from None


def is_onnx(target: str) -> bool:
    """Whether a target names an ONNX file."""
    return target.lower().endswith(".onnx")


def onnx_target(args: argparse.Namespace) -> tuple[Any, Any]:
    """(module, graph): an ONNX file imported with lucid.onnx.load and traced on zeros of the
    input shapes it declares (a first dim without a fixed size is the batch: the symbol N)."""
    from lucid.ir import trace
    from lucid.onnx import load
    from lucid.tensor import Tensor

    if args.input:
        raise CLIError(
            f"{args.target}: an ONNX model's input shapes come from the file; drop --input"
        )
    if args.dtype != "f32":
        raise CLIError(f"{args.target}: an ONNX model keeps its own dtypes; drop --dtype")
    model = load(args.target)
    inputs = [
        Tensor(np.zeros(tuple(args.batch if d is None else d for d in s.shape), s.dtype))
        for s in model.input_specs
    ]
    return model, trace(model, *inputs, dynamic_batch=model.dynamic_batch or args.dynamic_batch)


def export_stem(target: str, output: str) -> str:
    """Where `export` writes: `output` itself, or for an ONNX target and an output that names
    a directory (`out/`), that directory (created) / the ONNX file's stem."""
    if not is_onnx(target) or not (output.endswith(("/", "\\")) or Path(output).is_dir()):
        return output
    directory = Path(output)
    directory.mkdir(parents=True, exist_ok=True)
    return str(directory / Path(target).stem)


_NP = {"f32": np.float32, "f64": np.float64, "i64": np.int64, "bool": np.bool_}


def load_graph(args: argparse.Namespace) -> tuple[Any, Any]:
    """(model or None, graph) from a .lir file or a target."""
    from lucid.errors import ParseError
    from lucid.ir import parse

    if not args.target.endswith(".lir"):
        return traced_target(args)
    path = Path(args.target)
    try:
        text = path.read_text()
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror}") from None
    try:
        return None, parse(text)
    except ParseError as e:
        raise CLIError(
            f"{e.line}:{e.column}: error: {e.reason}\n  {e.source_line}\n  "
            + " " * (e.column - 1)
            + "^",
            where=str(path),
        ) from None


# ---------------------------------------------------------------- output


def render(graph: Any, args: argparse.Namespace) -> str | bytes:
    """The graph as text, DOT or SVG (through Graphviz's `dot`)."""
    from lucid.ir import format_graph, to_dot

    if args.format == "text":
        return format_graph(graph, locs=args.locs)
    if args.format == "dot":
        return to_dot(graph)
    dot = shutil.which("dot")
    if dot is None:
        raise CLIError(
            "--format svg needs Graphviz's `dot` program on PATH; install graphviz "
            "(e.g. apt-get install graphviz) or use --format dot"
        )
    done = subprocess.run(
        [dot, "-Tsvg"], input=to_dot(graph).encode(), capture_output=True, check=False
    )
    if done.returncode != 0:
        raise CLIError(f"dot failed (exit {done.returncode}): {done.stderr.decode().strip()}")
    return done.stdout


def emit(data: str | bytes, output: str | None) -> None:
    """Write to `-o FILE`, or to stdout."""
    if output is not None:
        Path(output).write_bytes(data if isinstance(data, bytes) else data.encode())
    elif isinstance(data, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
    else:
        sys.stdout.write(data)


def target_args(p: argparse.ArgumentParser, *, lir: bool) -> None:
    what = "FILE.lir or TARGET" if lir else "TARGET"
    p.add_argument(
        "target",
        metavar="FILE.lir|TARGET" if lir else "TARGET",
        help=f"{what}: 'seed', path/to/file.py:Name, package.module:Name or MODEL.onnx",
    )
    p.add_argument(
        "--input",
        action="append",
        metavar="SHAPE",
        help="an input shape such as 1x3 or Nx3 (symbolic batch), repeat per input; "
        "append :i64 etc. for another dtype",
    )
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32", help="float dtype")
    p.add_argument("--dynamic-batch", action="store_true", help="make every first dim N")
    p.add_argument("--batch", type=int, default=4, help="the size a symbolic dim gets")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")


def output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["text", "dot", "svg"], default="text")
    p.add_argument("--locs", action="store_true", help="print source locations in text form")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
