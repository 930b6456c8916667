"""`lucid-ir` subcommands that go through the C compiler: `emit-c` and `demo`.

They import codegen and the runtime only when they run, so `lucid-ir` starts (and its IR
commands work) without a C compiler; lucid/cli.py adds COMPILE_COMMANDS to its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

import numpy as np

import lucid
from lucid._cli_common import SEED_INPUT, CommandTable, emit, load_graph, seed_model, target_args

if TYPE_CHECKING:
    from lucid.nn import Module
    from lucid.runtime.compiled import CompiledModule
    from lucid.tensor import Tensor

COMPILE_COMMANDS = CommandTable()
command = COMPILE_COMMANDS.command


def _emit_c_args(p: argparse.ArgumentParser) -> None:
    target_args(p, lir=True)
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument(
        "--isa",
        choices=("auto", "avx512", "avx2", "scalar"),
        default="auto",
        help="instruction set of the GEMM kernels (default: this machine's)",
    )
    p.add_argument("--prefix", default="lucid", help="C symbol prefix (a C identifier)")
    p.add_argument(
        "--no-opt", action="store_true", help="emit the graph as given, without the default passes"
    )
    p.add_argument(
        "--autotune",
        action="store_true",
        help="time GEMM cache blockings on this machine (batch timed at 256; results kept in "
        "the compile cache, progress on stderr)",
    )


@command(
    "emit-c",
    "print the C that lucid generates for a graph",
    _emit_c_args,
    examples=(
        ("lucid-ir emit-c seed --input Nx3 -o seed.c", "after the default passes"),
        (
            "lucid-ir emit-c --model mymodel:Net --input Nx3 --no-opt --isa scalar --prefix net",
            "as traced, portable C, symbols net_*",
        ),
    ),
)
def cmd_emit_c(args: argparse.Namespace) -> int:
    """Optimise a graph with the default pipeline (unless --no-opt) and print its C source."""
    from lucid.codegen import CodegenOptions, emit_c
    from lucid.ir.passes import PassManager, default_pipeline

    _, graph = load_graph(args)
    if not args.no_opt:
        graph, _ = PassManager(default_pipeline()).run(graph)
    tuner = None
    if args.autotune:
        from lucid.runtime.autotune import Autotuner

        tuner = Autotuner()
    program = emit_c(graph, CodegenOptions(isa=args.isa, prefix=args.prefix, blocking_for=tuner))
    emit(program.source, args.output)
    return 0


def _median_us(fn: Callable[[], object], repeat: int = 2000) -> float:
    """Median wall time of one call of `fn`, in microseconds (after a short warm-up)."""
    for _ in range(50):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


@command(
    "demo",
    "compile the seed model, run it, compare with eager and print IR, timings and the C's path",
    examples=(("lucid-ir demo", "exit 1 if the compiled results differ from eager lucid's"),),
)
def cmd_demo(args: argparse.Namespace) -> int:
    """The quick-start: the seed model compiled to C, checked against eager lucid."""
    lucid.random.seed(0)
    model = seed_model()
    x = lucid.tensor(SEED_INPUT)
    out = sys.stdout

    start = time.perf_counter()
    compiled = lucid.compile(model, dynamic_batch=True)
    with lucid.no_grad():  # inference: the forward-only build
        y = compiled(x)
    first_call = time.perf_counter() - start
    info = compiled.build_info
    stages = compiled.stages()

    with lucid.no_grad():
        expected = model(x).data
    err = float(np.max(np.abs(y.data - expected)))
    ok = np.allclose(y.data, expected, rtol=1.3e-6, atol=1e-5)

    out.write(f"model: {model!r}\n\n")
    out.write(f"traced IR:\n{stages['traced']}\n\noptimized IR:\n{stages['optimized']}\n\n")
    with np.printoptions(precision=6, suppress=True):
        out.write(f"input:            {x.data}\n")
        out.write(f"compiled output:  {y.data}\n")
        out.write(f"eager output:     {expected}\n")
    out.write(f"max |compiled - eager| = {err:.3g}  ({'ok' if ok else 'MISMATCH'})\n\n")

    with lucid.no_grad():
        compiled_us = _median_us(lambda: compiled(x))
        eager_us = _median_us(lambda: model(x))
    origin = "loaded from the cache" if info and info.from_cache else "built"
    out.write(f"first call (trace + optimize + codegen + {origin}): {first_call * 1e3:.1f} ms\n")
    if info is not None:
        out.write(
            f"  codegen {info.codegen_seconds * 1e3:.1f} ms, C {origin} in "
            f"{info.seconds * 1e3:.1f} ms\n"
        )
    out.write(
        f"per call, batch 1 (median): compiled {compiled_us:.2f} us, "
        f"eager {eager_us:.2f} us ({eager_us / compiled_us:.1f}x)\n"
    )
    out.write(f"threads: {lucid.get_num_threads()}\n")
    if info is not None:
        out.write(f"C library: {info.path}\n")
        out.write(f"C source:  {info.path.parent / 'source.c'}\n")
    out.write("see the generated C with: lucid-ir emit-c seed\n\n")
    grads_ok = _demo_training_step(compiled, model, x, out)
    return 0 if ok and grads_ok else 1


def _demo_training_step(compiled: CompiledModule, model: Module, x: Tensor, out: TextIO) -> bool:
    """One backward through the compiled forward+backward graphs, checked against eager."""
    start = time.perf_counter()
    compiled(x).sum().backward()
    seconds = time.perf_counter() - start
    got = {name: p.grad.copy() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model(x).sum().backward()
    ok = True
    for name, p in model.named_parameters():
        want = p.grad
        match = (name in got) == (want is not None) and (
            want is None or np.allclose(got[name], want, rtol=1e-5, atol=1e-6)
        )
        ok = ok and match
    model.zero_grad()
    out.write(
        f"training step (forward + compiled backward, first call {seconds * 1e3:.0f} ms): "
        f"parameter gradients {'match' if ok else 'DO NOT MATCH'} eager lucid\n"
    )
    return ok
