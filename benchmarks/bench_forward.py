"""Forward latency of compiled lucid against eager lucid, NumPy, PyTorch and ONNX Runtime.

Run: python benchmarks/bench_forward.py   (uses a private compile cache under a temp dir)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import fmt_time, per_call, print_table

ROOT = Path(__file__).resolve().parent.parent
SEED = """
import lucid.nn as nn
class Seed(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 5)
        self.hardswish = nn.HardSwish()
        self.fc2 = nn.Linear(5, 2)
    def forward(self, x):
        return self.fc2(self.hardswish(self.fc1(x)))
"""
FRESH = (
    SEED
    + """
import json, time
import numpy as np, lucid
start = time.perf_counter()
cm = lucid.compile(Seed().eval())
cm(np.ones((1, 3), np.float32))
print(json.dumps({"seconds": time.perf_counter() - start, "from_cache": cm.build_info.from_cache}))
"""
)


def np_hardswish(h: np.ndarray) -> np.ndarray:
    t = h / 6 + 0.5
    return h * np.where(t < 0, 0, np.where(t > 1, 1, t)).astype(h.dtype)


def _onnxruntime_forward(x, w1, b1, w2, b2):
    """An ONNX Runtime session of Gemm -> HardSwish -> Gemm built with onnx.helper.

    Built directly rather than through torch.onnx.export, which needs extra packages in recent
    PyTorch releases and decides the lowering itself; this graph is exactly lucid's model.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["z"], transB=1),
        helper.make_node("HardSwish", ["z"], ["h"]),
        helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], transB=1),
    ]
    inits = [
        numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [x.shape[0], w2.shape[0]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = lucid_threads()
    sess = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return lambda: sess.run(None, {"x": x})


def lucid_threads() -> int:
    """The thread count lucid uses, so every system gets the same."""
    import lucid

    return lucid.get_num_threads()


def systems(model, x: np.ndarray) -> dict[str, object]:
    """name -> zero-argument forward callable (None when the system is not installed)."""
    import lucid

    w1, b1 = model.fc1.weight.data, model.fc1.bias.data
    w2, b2 = model.fc2.weight.data, model.fc2.bias.data
    cm = lucid.compile(model)
    xt = lucid.Tensor(x)
    out: dict[str, object] = {
        "lucid compiled": lambda: cm(x),
        "lucid eager": lambda: model(xt),
        "numpy": lambda: np_hardswish(x @ w1.T + b1) @ w2.T + b2,
        "pytorch eager": None,
        "onnxruntime": None,
    }
    if importlib.util.find_spec("torch"):
        import torch

        torch.set_num_threads(lucid_threads())
        tm = torch.nn.Sequential(
            torch.nn.Linear(w1.shape[1], w1.shape[0]),
            torch.nn.Hardswish(),
            torch.nn.Linear(w2.shape[1], w2.shape[0]),
        ).eval()
        with torch.no_grad():  # the same weights as lucid's model
            for layer, (w, b) in zip((tm[0], tm[2]), ((w1, b1), (w2, b2))):
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(b))
        tx = torch.from_numpy(x)

        def torch_forward():
            with torch.inference_mode():
                return tm(tx)

        out["pytorch eager"] = torch_forward
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        out["onnxruntime"] = _onnxruntime_forward(x, w1, b1, w2, b2)
    return out, cm


def main() -> None:
    cache = tempfile.mkdtemp(prefix="lucid-bench-")
    os.environ["LUCID_CACHE_DIR"] = cache  # before lucid reads it: a cold cache for this run
    import lucid
    from lucid import nn
    from lucid.runtime.build import DEFAULT_FLAGS

    ns: dict = {}
    exec(SEED, ns)  # noqa: S102  (the same class source the fresh-process child runs)
    lucid.random.seed(0)
    print(
        f"threads: {lucid.get_num_threads()}  flags: {' '.join(DEFAULT_FLAGS)}  "
        f"python {sys.version.split()[0]}  numpy {np.__version__}  cache {cache}"
    )

    seed = ns["Seed"]().eval()
    start = time.perf_counter()
    cm = lucid.compile(seed)
    cm(np.ones((1, 3), np.float32))
    cold = time.perf_counter() - start
    print(
        f"cold compile + first call of the seed model: {fmt_time(cold)} "
        f"(C build {fmt_time(cm.build_info.seconds)}, codegen {fmt_time(cm.build_info.codegen_seconds)})"
    )
    # An installed package has its bytecode compiled; this sandbox may set
    # PYTHONDONTWRITEBYTECODE, which would add ~40 ms of source compilation to every import.
    # So the child runs with bytecode caching, once to write it and once measured.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for _ in range(2):
        child = subprocess.run(
            [sys.executable, "-c", FRESH],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
    fresh = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        f"fresh process, disk hit: lucid.compile + first call {fmt_time(fresh['seconds'])} "
        f"(from_cache={fresh['from_cache']}; lucid's lazy imports included, numpy's not)"
    )

    x1 = np.array([[0.5, -1.2, 3.3]], np.float32)
    calls, _ = systems(seed, x1)
    print_table(
        "seed model (Linear(3,5) -> HardSwish -> Linear(5,2)), batch 1, per call",
        {k: (per_call(f) if f else None) for k, f in calls.items()},
        "lucid compiled",
    )

    class Wide(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.act, self.fc2 = (
                nn.Linear(1024, 1024),
                nn.HardSwish(),
                nn.Linear(1024, 1024),
            )

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    wide = Wide().eval()
    x256 = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)
    calls, cmw = systems(wide, x256)
    try:
        np.testing.assert_allclose(cmw(x256).data, calls["numpy"](), rtol=1e-3, atol=1e-3)
    except Exception as exc:  # noqa: BLE001  report a codegen failure and still time the other systems
        print(f"\nlucid compiled failed on the 1024-wide model: {type(exc).__name__}: {exc}")
        calls["lucid compiled"] = None
    print_table(
        "Linear(1024,1024) -> HardSwish -> Linear(1024,1024), batch 256",
        {k: (per_call(f, budget=1.0, repeat=9) if f else None) for k, f in calls.items()},
        "numpy",
    )


if __name__ == "__main__":
    main()
