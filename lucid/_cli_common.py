"""What the `lucid-ir` subcommand modules share: the command table, the built-in seed model,
loading a target or a .lir file, random inputs, and writing the result.

lucid/cli.py (the IR commands and `main`) and lucid/_cli_compile.py (the commands that go
through the C compiler) both build on this module; neither imports the other's internals.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
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
from lucid.errors import excerpt
from lucid.nn import Module

SEED_INPUT = [[0.5, -1.2, 3.3]]  # the seed page's example input
BATCH = 4  # the rows a symbolic batch dim gets when data is made up (tracing; `run` by default)


class CLIError(Exception):
    """A user-facing failure with an optional `file:line` location: exit 1."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


class UsageError(CLIError):
    """A mistake in the command line that argparse cannot see (options that conflict, a
    malformed model spec): exit 2 with the subcommand's usage, as argparse's own errors do."""


Example = tuple[str, str]  # (command line, what it does): `--help` lists them, tests run them


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, argument setup, the function that runs it and
    the examples its `--help` shows (each runs as written in a directory holding mymodel.py,
    which defines an nn.Module class Net, and model.onnx)."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    examples: tuple[Example, ...] = ()


class CommandTable:
    """The subcommands one module defines, in definition order (cli.py joins the tables)."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def command(
        self,
        name: str,
        help: str,
        arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None,
        examples: tuple[Example, ...] = (),
    ) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
        """Decorator: add `run(args) -> exit code` as subcommand `name`."""

        def register(
            run: Callable[[argparse.Namespace], int],
        ) -> Callable[[argparse.Namespace], int]:
            if name in self.commands:
                raise ValueError(f"subcommand {name!r} is already defined")
            self.commands[name] = Command(name, help, arguments, run, examples)
            return run

        return register


def format_examples(examples: tuple[Example, ...]) -> str:
    """The `examples:` section of a --help text: each command line under a comment."""
    rows = [f"  # {what}\n  {line}" for line, what in examples]
    return "\n".join(["examples:", *rows])


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


def load_target(target: str) -> Module:
    """The Module named by `seed`, `path/file.py:attr` or `package.module:attr`: attr is a
    Module instance, a Module class or a factory called with no arguments."""
    if target in BUILTINS:
        return BUILTINS[target][0]()
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise UsageError(
            "expected a model as 'seed', package.module:attr or path/to/file.py:attr "
            f"(attr a Python name), got {target!r}"
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        namespace = _load_file(Path(where))
    else:
        namespace = _import_module(where)
    if not hasattr(namespace, name):
        models = sorted(k for k, v in vars(namespace).items() if _is_model(v) and k[0] != "_")
        found = f"; its models: {', '.join(models)}" if models else ""
        origin = getattr(namespace, "__file__", None) or where
        raise CLIError(f"{origin} has no attribute {name!r}{found}")
    return _as_module(getattr(namespace, name), target, name)


def _is_model(obj: object) -> bool:
    return isinstance(obj, Module) or (isinstance(obj, type) and issubclass(obj, Module))


def _as_module(obj: object, target: str, name: str) -> Module:
    """`obj` itself if it is a Module, else what calling it with no arguments returns."""
    if isinstance(obj, Module):
        return obj
    kinds = "an nn.Module instance, an nn.Module class or a function that returns an nn.Module"
    if isinstance(obj, type) and not issubclass(obj, Module):
        raise CLIError(f"{target}: expected {kinds}, got the class {obj.__name__}")
    if not callable(obj):
        raise CLIError(f"{target}: expected {kinds}, got an object of type {type(obj).__name__}")
    try:
        inspect.signature(obj).bind()
    except TypeError as e:
        raise CLIError(f"{target}: {name} cannot be called with no arguments ({e})") from None
    except ValueError:  # no signature to inspect (a builtin): let the call decide
        pass
    try:
        model = obj()
    except Exception as e:  # noqa: BLE001  (any failure of the user's code: one line)
        raise CLIError(f"{target}: {name}() raised {type(e).__name__}: {e}") from None
    if not isinstance(model, Module):
        got = type(model).__name__
        raise CLIError(
            f"{target}: expected {name}() to return an nn.Module, got an object of type {got}"
        )
    return model


def _import_module(where: str) -> Any:
    """Import `where` as `python -m` would: the current directory first, then sys.path.

    The directory is on sys.path during the import only, so the caller's path is unchanged."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()  # a module file written after the last import is seen
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        if e.name is not None and (where == e.name or where.startswith(e.name + ".")):
            raise CLIError(
                f"no module named {e.name!r} in the current directory ({cwd}) or on sys.path"
            ) from None
        raise CLIError(f"importing {where!r} failed: {type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001  (any failure of the user's module: one line)
        raise CLIError(f"importing {where!r} failed: {type(e).__name__}: {e}") from None
    finally:
        if added:
            sys.path.remove(cwd)


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
    bad = UsageError(
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
        raise UsageError(
            f"{args.target}: expected the input shapes with --input (e.g. --input Nx3), got none"
        )
    float_dtype = np.dtype(np.float64 if args.dtype == "f64" else np.float32)
    if float_dtype == np.float64:
        for p in model.parameters():  # the model is ours (made just now): widen it in place
            p.data = p.data.astype(np.float64)
    rng = np.random.default_rng(args.seed)
    inputs, dynamic = [], args.dynamic_batch
    for spec in specs:
        shape, dt = parse_input(spec)
        dynamic = dynamic or any(isinstance(d, str) for d in shape)
        concrete = tuple((args.batch or BATCH) if isinstance(d, str) else d for d in shape)
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

    model = load(args.target)
    batch = args.batch or BATCH
    inputs = [
        Tensor(np.zeros(tuple(batch if d is None else d for d in s.shape), s.dtype))
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
        return None, parse(text, filename=str(path))
    except ParseError as e:
        raise CLIError(str(e), where=str(path)) from None


def with_excerpt(message: str, lir: str) -> str:
    """`message` with the source line and a caret under its first line, when that line is
    located in the .lir file `lir` (`lir:line:col: error: ...`) and they are not shown yet."""
    m = re.match(rf"{re.escape(lir)}:(\d+):(\d+): error: ", message)
    if m is None:
        return message
    try:
        lines = Path(lir).read_text().splitlines()
    except OSError:
        return message
    line, column = int(m[1]), int(m[2])
    if line > len(lines):
        return message
    shown = excerpt(lines[line - 1], column)
    head, _, rest = message.partition("\n")
    if rest.startswith(shown):
        return message
    return "\n".join([head, shown, *([rest] if rest else [])])


def check_args(args: argparse.Namespace) -> None:
    """The checks argparse cannot make: exactly one of TARGET and --model, no option that the
    target cannot use (a .lir file and an ONNX model declare their own input types), and no
    --locs for a format without locations."""
    model = getattr(args, "model", None)
    if model is not None:
        if args.target is not None:
            raise UsageError(
                f"expected the model once, as TARGET or --model, got both: {args.target!r} "
                f"and --model {model!r}"
            )
        if model.endswith((".lir", ".onnx")):
            raise UsageError(
                f"--model expects module:attr or path/to/file.py:attr, got {model!r}; give a "
                ".lir or .onnx file as the TARGET argument"
            )
        args.target = model
    elif args.target is None:
        raise UsageError("expected a TARGET or --model module:attr, got neither")
    if args.target.endswith(".lir") or is_onnx(args.target):
        kind = "a .lir file" if args.target.endswith(".lir") else "an ONNX model"
        given = [f"--input {args.input[0]}"] if getattr(args, "input", None) else []
        given += [f"--dtype {args.dtype}"] if getattr(args, "dtype", None) else []
        if args.target.endswith(".lir") and getattr(args, "dynamic_batch", False):
            given.append("--dynamic-batch")
        if given:
            raise UsageError(
                f"{args.target}: {kind} declares its own input types; {' and '.join(given)} "
                "applies to Python models only"
            )
    if getattr(args, "locs", False) and args.format != "text":
        raise UsageError(f"--locs applies to --format text, got --format {args.format}")


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


def _positive(text: str) -> int:
    """argparse type: an int >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def target_args(p: argparse.ArgumentParser, *, lir: bool, data: bool = False) -> None:
    """TARGET (or --model) and the options that shape a traced model's inputs; with `data`
    (commands that run the graph on random inputs), --batch and --seed too."""
    what = "FILE.lir, " if lir else ""
    p.add_argument(
        "target",
        nargs="?",
        metavar="FILE.lir|TARGET" if lir else "TARGET",
        help=f"{what}'seed', package.module:attr, path/to/file.py:attr or MODEL.onnx; attr is "
        "an nn.Module, an nn.Module class or a function returning one; modules are imported "
        "from the current directory first",
    )
    p.add_argument(
        "--model",
        metavar="SPEC",
        help="the model as module:attr or path/to/file.py:attr (instead of TARGET)",
    )
    p.add_argument(
        "--input",
        action="append",
        metavar="SHAPE",
        help="an input shape such as 1x3 or Nx3 (symbolic batch), repeat per input; "
        "append :i64 etc. for another dtype",
    )
    p.add_argument("--dtype", choices=["f32", "f64"], help="float dtype (default: f32)")
    p.add_argument("--dynamic-batch", action="store_true", help="make every first dim N")
    if not data:
        p.set_defaults(batch=None, seed=0)
        return
    p.add_argument(
        "--batch",
        type=_positive,
        help=f"rows of the symbolic batch dim N (default: {BATCH}); makes a model's batch "
        "symbolic, as --dynamic-batch does",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")


def output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["text", "dot", "svg"], default="text")
    p.add_argument("--locs", action="store_true", help="print source locations in text form")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
