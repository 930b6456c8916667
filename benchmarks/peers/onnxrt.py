"""ONNX Runtime (CPU execution provider), forward only.

MLP and GEMM rows: a graph built with onnx.helper (Gemm with transB=1, HardSwish), which keeps
torch out of these rows, and the graph is exactly lucid's model: no exporter decides how to
lower anything. Model rows (MobileNetV3-Small, GPT): the PyTorch twin of tests/zoo/ holding
lucid's weights, exported in eval mode by `torch.onnx.export` (the TorchScript exporter,
`dynamo=False`: it needs no onnxscript and gives one plain graph; the shapes are static, as
timed), so these rows need torch.
"""

from __future__ import annotations

import numpy as np
from workloads import Data, Workload

from peers import Forward, Train, Unavailable

OPSET = 17  # HardSwish is in opset 14 and later


def _graph(w: Workload, d: Data):
    """The ModelProto of the workload, weights as initializers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if w.kind == "gemm":
        m, k, n = w.sizes
        nodes = [helper.make_node("MatMul", ["a", "b"], ["y"])]
        inputs = [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, n]),
        ]
        inits = []
        out_shape = [m, n]
    else:
        nodes, inits, h = [], [], "x"
        for j, (wt, b) in enumerate(d.weights):
            if j:
                nodes.append(helper.make_node("HardSwish", [h], [f"a{j}"]))
                h = f"a{j}"
            inits += [numpy_helper.from_array(wt, f"w{j}"), numpy_helper.from_array(b, f"b{j}")]
            out = "y" if j == len(d.weights) - 1 else f"z{j}"
            nodes.append(helper.make_node("Gemm", [h, f"w{j}", f"b{j}"], [out], transB=1))
            h = out
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(d.x.shape))]
        out_shape = [w.batch, w.sizes[-1]]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)]
    graph = helper.make_graph(nodes, w.name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    onnx.checker.check_model(model)
    return model


def _exported(w: Workload, d: Data) -> bytes:
    """The model's PyTorch twin (eval mode, lucid's weights) exported to ONNX, serialized."""
    import io
    import warnings

    from peers import installed

    if not installed("torch"):
        raise Unavailable("the model graph is exported from the PyTorch twin: needs torch")
    import torch
    from model_workloads import torch_twin

    model = torch_twin(w, d).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings are not results
        torch.onnx.export(
            model,
            (torch.from_numpy(d.x),),
            buf,
            input_names=["x"],
            output_names=["y"],
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()


class OnnxRuntime:
    """onnxruntime.InferenceSession, all graph optimisations, intra_op_num_threads = --threads."""

    name = "onnxruntime"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def model(self, w: Workload, d: Data, mode: str) -> bytes:
        """The row's serialized ONNX graph (for a model, exported from PyTorch): what a user of
        ONNX Runtime starts from, the .onnx file's bytes."""
        if mode == "train":
            raise Unavailable("forward only (inference runtime)")
        return _exported(w, d) if w.kind == "model" else _graph(w, d).SerializeToString()

    def forward(self, w: Workload, d: Data, model: bytes) -> Forward:
        """An InferenceSession of `model`; sess.run on the workload's input (the output is a
        list of one array)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        feed = {"a": d.x, "b": d.b_matrix} if w.kind == "gemm" else {"x": d.x}
        return Forward(lambda: sess.run(None, feed), lambda out: np.asarray(out[0]))

    def train(self, w: Workload, d: Data, model: bytes) -> Train:
        """ONNX Runtime's training API is a separate package; inference is what it is for."""
        raise Unavailable("forward only (inference runtime)")
