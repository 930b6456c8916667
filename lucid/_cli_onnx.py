"""`lucid-ir import MODEL.onnx`: an ONNX model imported with lucid.onnx.load, printed as the IR
lucid traces from it (the text `trace` prints for a lucid model).

The other subcommands (`trace`, `opt`, `run`, `grad`, `emit-c`, `export`) take an `.onnx`
target too: lucid/_cli_common.py's `onnx_target` imports it, with the input shapes the file
declares (a first dim without a fixed size is the batch, given --batch rows when data is
needed).
"""

from __future__ import annotations

import argparse

from lucid._cli_common import (
    CLIError,
    CommandTable,
    emit,
    is_onnx,
    onnx_target,
    output_args,
    render,
)

ONNX_COMMANDS = CommandTable()
command = ONNX_COMMANDS.command


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="MODEL.onnx", help="the ONNX file")
    p.add_argument(
        "--dynamic-batch", action="store_true", help="make every first dim N (the batch)"
    )
    p.set_defaults(batch=None)
    output_args(p)


@command(
    "import",
    "import an ONNX model and print its traced IR",
    _import_args,
    examples=(
        ("lucid-ir import model.onnx", "the IR lucid traces from the file"),
        (
            "lucid-ir import model.onnx --dynamic-batch --format dot -o model.dot",
            "with a symbolic batch, as Graphviz DOT",
        ),
    ),
)
def cmd_import(args: argparse.Namespace) -> int:
    """Print the IR lucid traces from an ONNX file."""
    if not is_onnx(args.target):
        raise CLIError(f"{args.target}: expected an .onnx file")
    _, graph = onnx_target(args)
    emit(render(graph, args), args.output)
    return 0
