"""`lucid-ir`: trace models, run passes, interpret graphs and manage the compile cache.

Each subcommand is one function added with `@command(name, help, arguments)` to this module's
table; the commands that need the C compiler (`emit-c`, `demo`) are in lucid/_cli_compile.py,
and what both share (loading targets, random inputs, output) in lucid/_cli_common.py.
`COMMANDS` joins the two tables and `main` builds the argparse parser from it.

Results go to stdout; diagnostics (errors, --timings, --print-after-all) to stderr. Errors
print as `file:line: error: message` when they have a location (`file.lir:line:col: error:`
with the source line and a caret for a .lir file), else `lucid-ir: error: ...`, and exit 1.
Usage errors exit 2 with the subcommand's usage: argparse's own, and those found after
parsing (UsageError: options that conflict, a malformed model spec).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Sequence

import numpy as np

import lucid
from lucid._cli_common import (
    BATCH,
    CLIError,
    Command,
    CommandTable,
    SeedModel,
    UsageError,
    check_args,
    emit,
    export_stem,
    format_examples,
    load_graph,
    output_args,
    random_array,
    render,
    seed_model,
    target_args,
    traced_target,
    with_excerpt,
)
from lucid._cli_compile import COMPILE_COMMANDS
from lucid._cli_onnx import ONNX_COMMANDS

__all__ = ["COMMANDS", "PROG", "SeedModel", "build_parser", "main", "seed_model"]

PROG = "lucid-ir"
IR_COMMANDS = CommandTable()
command = IR_COMMANDS.command


# ---------------------------------------------------------------- subcommands


def _trace_args(p: argparse.ArgumentParser) -> None:
    target_args(p, lir=False)
    output_args(p)


@command(
    "trace",
    "trace a model and print its IR",
    _trace_args,
    examples=(
        ("lucid-ir trace seed", "the built-in seed model (Linear -> HardSwish -> Linear)"),
        (
            "lucid-ir trace --model mymodel:Net --input Nx3",
            "class Net of ./mymodel.py (or a Module instance or factory) on a symbolic batch N",
        ),
        ("lucid-ir trace mymodel.py:Net --input 2x3 --dtype f64 --locs", "a file, in float64"),
        ("lucid-ir trace seed --input Nx3 --format dot -o seed.dot", "Graphviz DOT, to a file"),
    ),
)
def cmd_trace(args: argparse.Namespace) -> int:
    """Print the traced IR of a target."""
    _, graph = traced_target(args)
    emit(render(graph, args), args.output)
    return 0


def _opt_args(p: argparse.ArgumentParser) -> None:
    target_args(p, lir=True)
    output_args(p)
    p.add_argument("-p", "--passes", metavar="P1,P2", help="passes to run (default pipeline)")
    p.add_argument("--print-after-all", action="store_true", help="IR after each pass, to stderr")
    p.add_argument(
        "--verify-each",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="verify the IR after each pass (default: on)",
    )
    p.add_argument("--timings", action="store_true", help="per-pass wall time, to stderr")


@command(
    "opt",
    "run passes over a graph and print the result",
    _opt_args,
    examples=(
        ("lucid-ir opt seed --input Nx3", "the pipeline lucid.compile runs"),
        (
            "lucid-ir trace seed --input Nx3 -o seed.lir && lucid-ir opt seed.lir -p dce,cse",
            "named passes over a .lir file",
        ),
    ),
)
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
    lambda p: target_args(p, lir=True, data=True),
    examples=(
        ("lucid-ir run seed", "the seed model on a random 1x3 input"),
        (
            "lucid-ir run --model mymodel:Net --input Nx3 --batch 8 --seed 1",
            "8 rows of random inputs drawn with seed 1",
        ),
    ),
)
def cmd_run(args: argparse.Namespace) -> int:
    """Run the reference interpreter; a target runs with its own parameters."""
    from lucid.ir import interpret
    from lucid.ir.printer import format_lines

    if args.batch is not None and not args.target.endswith(".lir"):
        args.dynamic_batch = True  # a model traced for --batch rows gets a symbolic batch
    model, graph = load_graph(args)
    symbols = {s for v in graph.inputs for s in v.type.symbols}
    if args.batch is not None and not symbols:
        types = ", ".join(str(v.type) for v in graph.inputs)
        raise UsageError(
            f"--batch {args.batch} expected a symbolic dim such as N in the inputs of "
            f"@{graph.name}, got none ({types})"
        )
    rng = np.random.default_rng(args.seed)
    bindings = dict.fromkeys(symbols, args.batch or BATCH)
    values = graph.inputs if model is not None else (*graph.inputs, *graph.params)
    arrays = [random_array(v.type.concrete(bindings).shape, v.type.dtype.np, rng) for v in values]
    if model is not None:
        named = [*model.named_parameters(), *model.named_buffers()]
        params = {name: p.data for name, p in named}
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
    target_args(p, lir=True)
    output_args(p)
    p.add_argument(
        "-O", "--optimize", action="store_true", help="run the default pipeline (fusion too)"
    )
    p.add_argument(
        "--no-input-grads", action="store_true", help="params' gradients only (as in training)"
    )


@command(
    "grad",
    "print the backward graph of a graph (reverse-mode autodiff)",
    _grad_args,
    examples=(
        ("lucid-ir grad seed --input Nx3", "gradients of the inputs and parameters"),
        ("lucid-ir grad seed --input Nx3 --no-input-grads -O", "parameters only, optimised"),
    ),
)
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


@command(
    "cache",
    "show or clear the compile cache",
    _cache_args,
    examples=(
        ("lucid-ir cache info", "where the cache is, its entries and size"),
        ("lucid-ir cache clear", "delete its entries"),
    ),
)
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
    target_args(p, lir=False)
    p.add_argument(
        "-o",
        "--output",
        metavar="STEM",
        required=True,
        help="writes STEM.so/.h/.c (an ONNX target may name a directory: DIR/MODEL.so ...)",
    )
    p.add_argument("--name", help="C symbol prefix (default: STEM's base name, sanitised)")
    p.add_argument("--weights", choices=["embedded", "file"], default="embedded")
    p.add_argument("--march", default="x86-64-v3", help="-march of the build (e.g. native)")
    p.add_argument("--cc", help="C compiler (default: $CC or cc)")
    p.add_argument(
        "--print-flags",
        action="store_true",
        help="print the compile and link flags of a C program using the library, instead of "
        "the paths written (those go to stderr): cc app.c $(lucid-ir export ... --print-flags)",
    )


@command(
    "export",
    "compile a model into a shared library + C header (no Python)",
    _export_args,
    examples=(
        ("lucid-ir export seed --input Nx3 -o build/seed", "build/seed.so, .h, .c, .pc"),
        (
            "lucid-ir export --model mymodel:Net --input Nx3 -o build/net --print-flags",
            "and print the flags of a C program using it: cc app.c $(lucid-ir export ...)",
        ),
    ),
)
def cmd_export(args: argparse.Namespace) -> int:
    """Trace the target on --input shapes and export it with lucid.export."""
    from lucid.runtime.aot import consumer_flags, export
    from lucid.tensor import Tensor

    model, graph = traced_target(args)
    bind = {s: BATCH for v in graph.inputs for s in v.type.symbols}
    rng = np.random.default_rng(0)  # example inputs: their values do not reach the library
    inputs = [
        Tensor(random_array(v.type.concrete(bind).shape, v.type.dtype.np, rng))
        for v in graph.inputs
    ]
    result = export(
        model,
        tuple(inputs),
        export_stem(args.target, args.output),
        dynamic_batch=bool(bind),
        name=args.name,
        weights=args.weights,
        march=args.march,
        cc=args.cc,
    )
    paths = sys.stderr if args.print_flags else sys.stdout
    for path in (result.library, result.header, result.source, result.weights):
        if path is not None:
            print(path, file=paths)
    if args.print_flags:
        print(shlex.join(consumer_flags(result.library)))
    print(f"model {result.name}: {result.seconds:.2f} s", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- entry point

# Every subcommand, in help order: the IR commands above, the C compiler's, then ONNX import.
COMMANDS: dict[str, Command] = {
    **IR_COMMANDS.commands,
    **COMPILE_COMMANDS.commands,
    **ONNX_COMMANDS.commands,
}


EXAMPLES = (
    ("lucid-ir demo", "compile the seed model to C and compare it with eager lucid"),
    ("python -m lucid trace seed", "python -m lucid is lucid-ir"),
    ("lucid-ir run --help", "each command's options and examples"),
)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with one subparser per command; each --help ends with examples."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="lucid's IR tool",
        epilog=format_examples(EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {lucid.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        cmd.arguments(
            sub.add_parser(
                cmd.name,
                help=cmd.help,
                description=cmd.help,
                epilog=format_examples(cmd.examples),
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `lucid-ir` with `argv` (default: sys.argv[1:]); return the exit code.

    A usage error exits through argparse (SystemExit(2), the subcommand's usage on stderr)."""
    from lucid.errors import LucidError, TraceError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if "target" in args:
            check_args(args)
        return COMMANDS[args.command].run(args)
    except UsageError as e:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(str(e))
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
        target = getattr(args, "target", None) or ""
        text = with_excerpt(str(e), target) if target.endswith(".lir") else str(e)
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
