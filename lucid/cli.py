"""`lucid-ir`: trace models, run passes, interpret graphs and manage the compile cache.

Each subcommand is one function registered with `@command(name, help, arguments)` in the
`COMMANDS` table; `main` builds the argparse parser from the table. A later subcommand
(`grad`, `export`) is one more registered function here; the commands that need the C
compiler (`emit-c`, `demo`) are in lucid/_cli_compile.py.

Results go to stdout; diagnostics (errors, --timings, --print-after-all) to stderr. Errors
print as `file:line: error: message` when they have a location, else `lucid-ir: error: ...`,
and exit 1; usage errors exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import lucid
from lucid import nn
from lucid.nn import Module

PROG = "lucid-ir"
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


COMMANDS: dict[str, Command] = {}


def command(
    name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Decorator: register `run(args) -> exit code` as subcommand `name`."""

    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        COMMANDS[name] = Command(name, help, arguments, run)
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


def _target_args(p: argparse.ArgumentParser, *, lir: bool) -> None:
    what = "FILE.lir or TARGET" if lir else "TARGET"
    p.add_argument(
        "target",
        metavar="FILE.lir|TARGET" if lir else "TARGET",
        help=f"{what}: 'seed', path/to/file.py:Name or package.module:Name",
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


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["text", "dot", "svg"], default="text")
    p.add_argument("--locs", action="store_true", help="print source locations in text form")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")


# ---------------------------------------------------------------- subcommands


def _trace_args(p: argparse.ArgumentParser) -> None:
    _target_args(p, lir=False)
    _output_args(p)


@command("trace", "trace a model and print its IR", _trace_args)
def cmd_trace(args: argparse.Namespace) -> int:
    """Print the traced IR of a target."""
    _, graph = traced_target(args)
    emit(render(graph, args), args.output)
    return 0


def _opt_args(p: argparse.ArgumentParser) -> None:
    _target_args(p, lir=True)
    _output_args(p)
    p.add_argument("-p", "--passes", metavar="P1,P2", help="passes to run (default pipeline)")
    p.add_argument("--print-after-all", action="store_true", help="IR after each pass, to stderr")
    p.add_argument(
        "--verify-each",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="verify the IR after each pass (default: on)",
    )
    p.add_argument("--timings", action="store_true", help="per-pass wall time, to stderr")


@command("opt", "run passes over a graph and print the result", _opt_args)
def cmd_opt(args: argparse.Namespace) -> int:
    """Run named passes (or the default pipeline) and print the resulting IR."""
    from lucid.ir.passes import PassManager, default_pipeline

    _, graph = load_graph(args)
    names = [n for n in args.passes.split(",") if n] if args.passes else default_pipeline()
    manager = PassManager(
        names, verify_each=args.verify_each, print_after_all=args.print_after_all, out=sys.stderr
    )
    graph, report = manager.run(graph)
    emit(render(graph, args), args.output)
    if args.timings:
        sys.stderr.write(report.format())
    return 0


@command(
    "run",
    "interpret a graph on random inputs and print its outputs",
    lambda p: _target_args(p, lir=True),
)
def cmd_run(args: argparse.Namespace) -> int:
    """Run the reference interpreter; a target runs with its own parameters."""
    from lucid.ir import interpret
    from lucid.ir.printer import format_lines

    model, graph = load_graph(args)
    rng = np.random.default_rng(args.seed)
    bindings = {s: args.batch for v in graph.inputs for s in v.type.symbols}
    values = graph.inputs if model is not None else (*graph.inputs, *graph.params)
    arrays = [random_array(v.type.concrete(bindings).shape, v.type.dtype.np, rng) for v in values]
    if model is not None:
        params = {name: p.data for name, p in model.named_parameters()}
        outs = interpret(graph, *arrays, params=params)
    else:
        outs = interpret(graph, *arrays)
    header = format_lines(graph)[0][0]
    sys.stdout.write(header.removesuffix(" {") + "\n")
    with np.printoptions(precision=6, suppress=True):
        for i, out in enumerate(outs):
            sys.stdout.write(f"output {i}: {graph.outputs[i].type.concrete(bindings)} =\n{out}\n")
    return 0


def _grad_args(p: argparse.ArgumentParser) -> None:
    _target_args(p, lir=True)
    _output_args(p)
    p.add_argument(
        "-O", "--optimize", action="store_true", help="run the default pipeline (fusion too)"
    )
    p.add_argument(
        "--no-input-grads", action="store_true", help="params' gradients only (as in training)"
    )


@command("grad", "print the backward graph of a graph (reverse-mode autodiff)", _grad_args)
def cmd_grad(args: argparse.Namespace) -> int:
    """Differentiate with lucid.ir.autodiff.grad and print the backward (-O: optimised)."""
    from lucid.ir.autodiff import grad

    _, graph = load_graph(args)
    wrt = [False] * len(graph.inputs) if args.no_input_grads else None
    backward = grad(graph, wrt_inputs=wrt).backward
    if args.optimize:
        from lucid.ir.passes import PassManager, default_pipeline

        backward, _ = PassManager(default_pipeline()).run(backward)
    emit(render(backward, args), args.output)
    return 0


def _cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["info", "clear"])


@command("cache", "show or clear the compile cache", _cache_args)
def cmd_cache(args: argparse.Namespace) -> int:
    """`info`: where the cache is and how big; `clear`: delete its entries."""
    from lucid.runtime import cache

    if args.action == "info":
        info = cache.cache_info()
        print(f"path: {info['path']}\nentries: {info['entries']}\nbytes: {info['total_bytes']}")
    else:
        print(f"removed {cache.cache_clear()} entries")
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    _target_args(p, lir=False)
    p.add_argument("-o", "--output", metavar="STEM", required=True, help="writes STEM.so/.h/.c")
    p.add_argument("--name", help="C symbol prefix (default: STEM's base name, sanitised)")
    p.add_argument("--weights", choices=["embedded", "file"], default="embedded")
    p.add_argument("--march", default="x86-64-v3", help="-march of the build (e.g. native)")
    p.add_argument("--cc", help="C compiler (default: $CC or cc)")


@command("export", "compile a model into a shared library + C header (no Python)", _export_args)
def cmd_export(args: argparse.Namespace) -> int:
    """Trace the target on --input shapes and export it with lucid.export."""
    from lucid.runtime.aot import export
    from lucid.tensor import Tensor

    model, graph = traced_target(args)
    bind = {s: args.batch for v in graph.inputs for s in v.type.symbols}
    rng = np.random.default_rng(args.seed)
    inputs = [
        Tensor(random_array(v.type.concrete(bind).shape, v.type.dtype.np, rng))
        for v in graph.inputs
    ]
    result = export(
        model,
        tuple(inputs),
        args.output,
        dynamic_batch=bool(bind),
        name=args.name,
        weights=args.weights,
        march=args.march,
        cc=args.cc,
    )
    for path in (result.library, result.header, result.source, result.weights):
        if path is not None:
            print(path)
    print(f"model {result.name}: {result.seconds:.2f} s", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with one subparser per registered command."""
    import lucid._cli_compile  # registers emit-c and demo, which need the codegen

    parser = argparse.ArgumentParser(prog=PROG, description="lucid's IR tool")
    parser.add_argument("--version", action="version", version=f"{PROG} {lucid.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        cmd.arguments(sub.add_parser(cmd.name, help=cmd.help, description=cmd.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `lucid-ir` with `argv` (default: sys.argv[1:]); return the exit code."""
    from lucid.errors import LucidError, TraceError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except CLIError as e:
        where = f"{e.where}:" if e.where else f"{PROG}: error: "
        print(f"{where}{e}", file=sys.stderr)
    except TraceError as e:
        problems = getattr(e, "problems", ())
        print(f"{PROG}: error: {str(e).splitlines()[0] if problems else e}", file=sys.stderr)
        for problem in problems:  # one `file:line: error:` per problem, so editors can jump
            text = problem.diagnostic()
            print(text if problem.loc else f"{PROG}: {text}", file=sys.stderr)
    except LucidError as e:
        text = str(e)
        located = re.match(r"\S+:\d+: error: ", text) is not None
        print(
            text
            if located
            else f"{PROG}: " + (text if text.startswith("error: ") else f"error: {text}"),
            file=sys.stderr,
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
