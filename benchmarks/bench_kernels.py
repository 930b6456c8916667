"""Single kernels of the suite's models, compiled lucid against ONNX Runtime and PyTorch eager.

Run: python benchmarks/bench_kernels.py [--threads 2] [--evict 0] [--only stem,gap] [--tiny]

Each row is one op or a small block of MobileNetV3-Small or the GPT, alone:

  stem     Conv2d(3, 16, 3, stride 2, padding 1) + BatchNorm2d + HardSwish, 1 x 3 x 224 x 224
           (lucid's dense direct conv)
  se-fc2   Conv2d(144, 576, 1) + HardSigmoid on 1 x 144 x 1 x 1 (a squeeze-excite GEMV)
  head     Linear(576, 1024) + HardSwish + Linear(1024, 1000) at batch 1 (6.4 MB of weights)
  gap      AdaptiveAvgPool2d(1) of 32 x 576 x 7 x 7
  softmax  softmax over the last axis of 16 x 4 x 64 x 64 (the GPT's attention)

Every system gets the same weights and input, and the script checks that they agree before it
times them. Systems are timed in alternating rounds (a round of calls each, eight rounds, each
after a pause that lets the other systems' thread pools go idle), and each cell is the median
over all calls. `--evict MB` touches that many megabytes of other data
before every timed call, so a call's weights and input come from L3 or memory, as in a model,
rather than from the caches of the call before (0: warm). ONNX Runtime's graphs are built
with onnx.helper, so no exporter is involved; a column whose package is absent shows `-`.
Prints the CPU, threads and flags first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import fmt_time
from run_all import cpu_name

ROWS = ("stem", "se-fc2", "head", "gap", "softmax")
SYSTEMS = ("lucid", "onnxruntime", "pytorch")


def _lucid_model(row: str, tiny: bool):
    """(the lucid model, its input's shape) of `row`; tiny shapes keep the layers' kinds."""
    import lucid
    from lucid import nn

    lucid.random.seed(0)
    if row == "stem":
        m = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.HardSwish()
        )
        bn = m[1]
        rng = np.random.default_rng(1)  # statistics that are not the identity
        bn.running_mean.data[...] = rng.standard_normal(16).astype(np.float32) * 0.1
        bn.running_var.data[...] = rng.uniform(0.5, 2.0, 16).astype(np.float32)
        return m.eval(), (1, 3, 16, 16) if tiny else (1, 3, 224, 224)
    if row == "se-fc2":
        c, o = (8, 32) if tiny else (144, 576)
        return nn.Sequential(nn.Conv2d(c, o, 1), nn.HardSigmoid()).eval(), (1, c, 1, 1)
    if row == "head":
        i, h, o = (16, 32, 10) if tiny else (576, 1024, 1000)
        return nn.Sequential(nn.Linear(i, h), nn.HardSwish(), nn.Linear(h, o)).eval(), (1, i)
    if row == "gap":
        return nn.AdaptiveAvgPool2d(1), (2, 8, 7, 7) if tiny else (32, 576, 7, 7)
    if row == "softmax":
        return nn.Softmax(-1), (2, 2, 8, 8) if tiny else (16, 4, 64, 64)
    raise ValueError(f"unknown row {row!r}; expected one of {', '.join(ROWS)}")


def _onnx_graph(row: str, model, shape: tuple[int, ...], out_shape: tuple[int, ...]):
    """The row as an ONNX graph (opset 17) holding the lucid model's weights."""
    from onnx import TensorProto, helper, numpy_helper

    def init(name: str, a: np.ndarray):
        return numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), name)

    node = helper.make_node
    if row == "stem":
        conv, bn = model[0], model[1]
        nodes = [
            node("Conv", ["x", "w"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
            node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], epsilon=bn.eps),
            node("HardSwish", ["n"], ["y"]),
        ]
        inits = [init("w", conv.weight.data), init("g", bn.weight.data), init("b", bn.bias.data)]
        inits += [init("m", bn.running_mean.data), init("v", bn.running_var.data)]
    elif row == "se-fc2":
        conv = model[0]
        nodes = [
            node("Conv", ["x", "w", "b"], ["c"]),
            node("HardSigmoid", ["c"], ["y"], alpha=1.0 / 6.0, beta=0.5),
        ]
        inits = [init("w", conv.weight.data), init("b", conv.bias.data)]
    elif row == "head":
        l0, l2 = model[0], model[2]
        nodes = [
            node("Gemm", ["x", "w0", "b0"], ["h"], transB=1),
            node("HardSwish", ["h"], ["a"]),
            node("Gemm", ["a", "w1", "b1"], ["y"], transB=1),
        ]
        inits = [init("w0", l0.weight.data), init("b0", l0.bias.data)]
        inits += [init("w1", l2.weight.data), init("b1", l2.bias.data)]
    elif row == "gap":
        nodes, inits = [node("GlobalAveragePool", ["x"], ["y"])], []
    else:
        nodes, inits = [node("Softmax", ["x"], ["y"], axis=-1)], []
    graph = helper.make_graph(
        nodes,
        row,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto


def _torch_model(row: str, model, torch):
    """The row as PyTorch modules holding the lucid model's weights."""
    tnn = torch.nn

    def put(dst, src) -> None:
        with torch.no_grad():
            dst.copy_(torch.from_numpy(np.ascontiguousarray(src.data)))

    if row == "stem":
        conv, bn = model[0], model[1]
        t = tnn.Sequential(
            tnn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
            tnn.BatchNorm2d(16),
            tnn.Hardswish(),
        )
        put(t[0].weight, conv.weight)
        for name in ("weight", "bias", "running_mean", "running_var"):
            put(getattr(t[1], name), getattr(bn, name))
        t[1].eps = bn.eps
    elif row == "se-fc2":
        conv = model[0]
        t = tnn.Sequential(
            tnn.Conv2d(conv.weight.shape[1], conv.weight.shape[0], 1), tnn.Hardsigmoid()
        )
        put(t[0].weight, conv.weight)
        put(t[0].bias, conv.bias)
    elif row == "head":
        l0, l2 = model[0], model[2]
        t = tnn.Sequential(
            tnn.Linear(*l0.weight.shape[::-1]), tnn.Hardswish(), tnn.Linear(*l2.weight.shape[::-1])
        )
        for dst, src in ((t[0], l0), (t[2], l2)):
            put(dst.weight, src.weight)
            put(dst.bias, src.bias)
    elif row == "gap":
        t = tnn.AdaptiveAvgPool2d(1)
    else:
        t = tnn.Softmax(-1)
    return t.eval()


def _systems(row: str, threads: int, tiny: bool) -> tuple[dict[str, Callable[[], np.ndarray]], str]:
    """{system: a call returning its output as an array}, for the systems installed, and the
    row's description."""
    import lucid

    model, shape = _lucid_model(row, tiny)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    compiled = lucid.compile(model)
    xt = lucid.Tensor(x)
    calls: dict[str, Callable[[], np.ndarray]] = {"lucid": lambda: compiled(xt).numpy()}
    with lucid.no_grad():
        out_shape = tuple(model(lucid.Tensor(x)).shape)
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        proto = _onnx_graph(row, model, shape, out_shape)
        sess = ort.InferenceSession(
            proto.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        calls["onnxruntime"] = lambda: sess.run(None, {"x": x})[0]
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(threads)
        tm, tx = _torch_model(row, model, torch), torch.from_numpy(x)

        def run_torch() -> np.ndarray:
            with torch.no_grad():
                return tm(tx).numpy()

        calls["pytorch"] = run_torch
    except ImportError:
        pass
    return calls, f"{row} {'x'.join(map(str, shape))}"


def _check(calls: dict[str, Callable[[], np.ndarray]]) -> None:
    """ValueError when a system's output differs from lucid's beyond float32 tolerance."""
    want = calls["lucid"]()
    for name, call in calls.items():
        got = call()
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5):
            diff = np.abs(got.reshape(want.shape) - want).max() if got.size == want.size else "-"
            raise ValueError(f"{name} disagrees with lucid (shape {got.shape}, max diff {diff})")


def _time(
    calls: dict[str, Callable[[], object]],
    rounds: int,
    per_round: int,
    evict: np.ndarray | None,
    pause: float,
) -> dict[str, float]:
    """Median seconds per call of each system over alternating rounds. Each system's round
    starts after `pause` seconds and ten untimed calls: the thread pools of the system before
    (ONNX Runtime's, PyTorch's OpenMP) spin on both cores for a while after their last call,
    which had made lucid's two-thread calls up to 2x slower when the rounds followed at once."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            time.sleep(pause)
            for _ in range(10):
                call()
            for _ in range(per_round):
                if evict is not None:
                    evict += 1.0  # other data through the caches, untimed
                start = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def main(argv: list[str] | None = None) -> int:
    """Time every selected row; print one line each with lucid's ratio to each peer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--evict", type=float, default=0.0, help="MB touched before each call")
    parser.add_argument("--only", default=",".join(ROWS), help="rows, comma-separated")
    parser.add_argument(
        "--tiny", action="store_true", help="small shapes, short runs (a smoke test)"
    )
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.only.split(",") if r.strip()]
    for r in rows:
        if r not in ROWS:
            parser.error(f"unknown row {r!r}; expected one of {', '.join(ROWS)}")
    os.environ.setdefault("LUCID_CACHE_DIR", tempfile.mkdtemp(prefix="lucid-bench-kernels-"))
    import lucid
    from lucid.runtime.build import DEFAULT_FLAGS

    lucid.set_num_threads(args.threads)
    evict = np.ones(int(args.evict * (1 << 18)), np.float32) if args.evict > 0 else None
    print(f"CPU: {cpu_name()}; {args.threads} thread(s); flags {' '.join(DEFAULT_FLAGS)}")
    warmth = (
        f"{args.evict:g} MB of other data touched before each call" if evict is not None else "warm"
    )
    print(f"median per call, {warmth}; ratios: lucid's time / the peer's")
    head = "".join(f" {s:>12}" for s in SYSTEMS)
    print(f"  {'row':<28}{head} {'/ onnxruntime':>14} {'/ pytorch':>10}")
    rounds, per_round, pause = (2, 3, 0.0) if args.tiny else (8, 40, 0.2)
    for row in rows:
        calls, what = _systems(row, args.threads, args.tiny)
        try:
            _check(calls)
        except ValueError as exc:
            print(f"  {what}: {exc}")
            return 1
        med = _time(calls, rounds, per_round, evict, pause)
        cells = "".join(f" {fmt_time(med[s]) if s in med else '-':>12}" for s in SYSTEMS)
        ratios = [f"{med['lucid'] / med[s]:.2f}x" if s in med else "-" for s in SYSTEMS[1:]]
        print(f"  {what:<28}{cells} {ratios[0]:>14} {ratios[1]:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
