"""Models exported by torch.onnx.export (the TorchScript exporter, dynamo=False) import into
lucid and match ONNX Runtime, eagerly and compiled, at two batch sizes of a dynamic batch."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import lucid
from lucid.onnx import load

RTOL, ATOL = 1e-4, 1e-5


def export(model: Any, example: Any, input_name: str = "x") -> bytes:
    """The model as ONNX bytes with a dynamic batch axis on its input and output y."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buf,
            dynamo=False,
            input_names=[input_name],
            output_names=["y"],
            dynamic_axes={input_name: {0: "batch"}, "y": {0: "batch"}},
            opset_version=17,
        )
    return buf.getvalue()


def check(
    data: bytes,
    shape: tuple[int, ...],
    batches: tuple[int, ...],
    compiled: bool,
    tokens: int = 0,
    input_name: str = "x",
) -> None:
    """lucid (eager, and compiled if asked) against ONNX Runtime at each batch size; inputs are
    normal floats, or token ids below `tokens` when it is given."""
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    module = load(data)
    assert module.dynamic_batch
    runs = [module]
    if compiled:
        runs.append(lucid.compile(module, dynamic_batch=True))
    rng = np.random.default_rng(0)
    for batch in batches:
        if tokens:
            x = rng.integers(0, tokens, (batch, *shape)).astype(np.int64)
        else:
            x = rng.standard_normal((batch, *shape)).astype(np.float32)
        (want,) = session.run(None, {input_name: x})
        for run in runs:
            np.testing.assert_allclose(run(x).data, want, rtol=RTOL, atol=ATOL)


class MLP(torch.nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(10, 32)
        self.act = torch.nn.Hardswish()
        self.fc2 = torch.nn.Linear(32, 4)

    def forward(self, x: Any) -> Any:
        return self.fc2(self.act(self.fc1(x)))


class GeluMLP(torch.nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 16)
        self.act = torch.nn.GELU()  # exact: exported as Div, Erf, Add, Mul, Mul before opset 20
        self.fc2 = torch.nn.Linear(16, 3)

    def forward(self, x: Any) -> Any:
        return self.fc2(self.act(self.fc1(x)))


class Upsample(torch.nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: Any) -> Any:
        up = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(up)


def mobilenet() -> Any:
    from tests.zoo.torch_mobilenet import MobileNetV3Small

    torch.manual_seed(0)
    model = MobileNetV3Small().eval()
    for m in model.modules():  # statistics that matter, as a trained model has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.needs_cc
def test_mlp_with_hardswish_matches_onnxruntime() -> None:
    torch.manual_seed(0)
    data = export(MLP().eval(), torch.randn(2, 10))
    module = load(data)
    assert sorted(module.onnx_state_dict()) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    check(data, (10,), (1, 5), compiled=True)


@pytest.mark.needs_cc
def test_the_erf_pattern_of_exact_gelu_imports_as_gelu() -> None:
    from lucid.ir import format_graph, trace

    torch.manual_seed(0)
    data = export(GeluMLP().eval(), torch.randn(2, 6))
    module = load(data)
    text = format_graph(trace(module, lucid.Tensor(np.zeros((2, 6), np.float32))))
    assert "= gelu " in text and "erf" not in text
    check(data, (6,), (1, 4), compiled=True)


@pytest.mark.needs_cc
def test_nearest_upsampling_matches_onnxruntime() -> None:
    torch.manual_seed(0)
    check(export(Upsample().eval(), torch.randn(2, 3, 5, 6)), (3, 5, 6), (1, 3), compiled=True)


def test_mobilenet_v3_small_matches_onnxruntime_eagerly_at_64() -> None:
    check(export(mobilenet(), torch.randn(2, 3, 64, 64)), (3, 64, 64), (1, 3), compiled=False)


@pytest.mark.needs_cc
def test_mobilenet_v3_small_matches_onnxruntime_compiled_at_64() -> None:
    check(export(mobilenet(), torch.randn(2, 3, 64, 64)), (3, 64, 64), (2, 3), compiled=True)


@pytest.mark.slow
@pytest.mark.needs_cc
def test_mobilenet_v3_small_matches_onnxruntime_at_224() -> None:
    check(export(mobilenet(), torch.randn(1, 3, 224, 224)), (3, 224, 224), (1, 2), compiled=True)


@pytest.mark.needs_cc
def test_a_small_gpt_matches_onnxruntime() -> None:
    # token embeddings (Gather of runtime ids), LayerNorm, the exporter's decomposed causal
    # attention with its shape arithmetic (integer Div on Shape values), tanh GELU
    from tests.zoo.torch_gpt import GPT

    torch.manual_seed(0)
    model = GPT(50, 16, 2, 2, 32, tied=False).eval()
    data = export(model, torch.randint(0, 50, (2, 16)), input_name="idx")
    check(data, (16,), (1, 3), compiled=True, tokens=50, input_name="idx")


@pytest.mark.slow
@pytest.mark.needs_cc
def test_an_exported_library_of_the_imported_mobilenet_runs(tmp_path: Any) -> None:
    from lucid.runtime.loader import load as load_library

    data = export(mobilenet(), torch.randn(2, 3, 64, 64))
    module = load(data)
    x = np.random.default_rng(1).standard_normal((3, 3, 64, 64)).astype(np.float32)
    lucid.export(module, (lucid.Tensor(x[:2]),), str(tmp_path / "mnv3"), dynamic_batch=True)
    lib = load_library(str(tmp_path / "mnv3.so"))
    (want,) = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(lib(x), want, rtol=RTOL, atol=ATOL)
