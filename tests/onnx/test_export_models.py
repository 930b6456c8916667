"""lucid.onnx.export end to end: MobileNetV3-Small and the GPT through ONNX Runtime against eager
lucid, and the errors: unmapped ops, unwritable paths, training-mode BatchNorm, batch decisions.

Model tolerances are the zoo's (tests/zoo/test_mobilenetv3.py): ~50 float32 convolutions summed
in another order agree within atol 2e-4 * max|logit| and rtol 1e-3.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.errors import LucidError, TraceError
from lucid.ir.ops import OPS
from lucid.models import GPT, GPTConfig, mobilenet_v3_small
from lucid.nn import functional as F
from lucid.tensor import apply

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _session(path: Path) -> Any:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _close_model(got: np.ndarray, want: np.ndarray) -> None:
    scale = float(np.abs(want).max())
    assert scale > 1e-3  # a model whose logits are all ~0 would compare nothing
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-4 * scale)


def _mobilenet(num_classes: int) -> nn.Module:
    """MobileNetV3-Small in eval mode with random BatchNorm statistics and affine parameters
    (a fresh model's eval BatchNorm is nearly the identity, and its logits nearly zero)."""
    lucid.random.seed(0)
    model = mobilenet_v3_small(num_classes=num_classes)
    rng = np.random.default_rng(0)
    state = {}
    for name, t in model.state_dict().items():
        a = np.asarray(t.data if hasattr(t, "data") else t)
        if name.endswith("running_mean") or (name.endswith(".bias") and a.ndim == 1):
            state[name] = rng.normal(0.0, 0.1, a.shape).astype(a.dtype)
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 1.5, a.shape).astype(a.dtype)
    model.load_state_dict({k: lucid.Tensor(v) for k, v in state.items()}, strict=False)
    return model.eval()


def _check_mobilenet(tmp_path: Path, size: int, batches: tuple[int, ...]) -> Any:
    model = _mobilenet(10 if size == 64 else 1000)
    rng = np.random.default_rng(1)
    example = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    path = tmp_path / "mobilenet.onnx"
    lucid.onnx.export(model, lucid.Tensor(example), path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    session = _session(path)
    for n in batches:
        x = example if n == 2 else rng.standard_normal((n, 3, size, size)).astype(np.float32)
        (got,) = session.run(None, {"input_0": x})
        _close_model(got, model(lucid.Tensor(x)).data)
    return proto


def test_mobilenet_v3_small_64(tmp_path: Path) -> None:
    proto = _check_mobilenet(tmp_path, 64, (2, 1, 3))
    ops = {n.op_type for n in proto.graph.node}
    assert {"Conv", "HardSwish", "HardSigmoid", "GlobalAveragePool", "Gemm"} <= ops
    names = {i.name for i in proto.graph.initializer}
    assert {"features.0.0.weight", "features.0.1.running_var", "classifier.3.bias"} <= names
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("input_0", "output_0")
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["N", 3, 64, 64]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["N", 10]


@pytest.mark.slow
def test_mobilenet_v3_small_224(tmp_path: Path) -> None:
    _check_mobilenet(tmp_path, 224, (2, 1))


CFG = GPTConfig(vocab_size=17, block_size=12, n_layer=2, n_head=4, n_embd=32)


@pytest.mark.parametrize(("tied", "opset"), [(False, 17), (True, 20)])
def test_gpt_logits(tmp_path: Path, tied: bool, opset: int) -> None:
    lucid.random.seed(3)
    model = GPT(GPTConfig(**{**CFG.__dict__, "tied": tied})).eval()
    rng = np.random.default_rng(2)
    example = rng.integers(0, CFG.vocab_size, (2, 10))
    path = tmp_path / "gpt.onnx"
    lucid.onnx.export(model, lucid.Tensor(example), path, opset=opset, output_names=["logits"])
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert "transformer.wte.weight" in {i.name for i in proto.graph.initializer}
    assert ("lm_head.weight" in {i.name for i in proto.graph.initializer}) is not tied
    session = _session(path)
    for n in (2, 1, 3):
        idx = example if n == 2 else rng.integers(0, CFG.vocab_size, (n, 10))
        (got,) = session.run(["logits"], {"input_0": idx})
        want = model(lucid.Tensor(idx)).data
        assert got.shape == (n, 10, CFG.vocab_size)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- errors


class Unmapped(nn.Module):
    """A forward that records two gradient ops, which have no ONNX form."""

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        y = apply(OPS["hardswish_grad"], (x, x))
        z = apply(OPS["relu_grad"], (y, x))
        return z + x


def test_unmapped_ops_are_listed_with_their_lines_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"an older file")
    with pytest.raises(LucidError) as info:
        lucid.onnx.export(Unmapped(), lucid.Tensor(np.ones((2, 3), np.float32)), path)
    message = str(info.value)
    assert "2 node(s) with no ONNX form" in message
    for op in ("hardswish_grad", "relu_grad"):
        assert f"op '{op}' has no ONNX translation" in message
    line = Unmapped.forward.__code__.co_firstlineno  # the `def`; the two ops follow it
    assert f"{__file__}:{line + 1}: error" in message and f"{__file__}:{line + 2}: error" in message
    assert "> %0 = hardswish_grad %x, %x" in message  # the node's IR line, marked
    assert path.read_bytes() == b"an older file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_the_file_is_readable_by_others_or_keeps_the_mode_it_replaces(tmp_path: Path) -> None:
    x = lucid.Tensor(np.ones((2, 3), np.float32))
    lucid.onnx.export(nn.ReLU(), x, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == 0o644
    (tmp_path / "m.onnx").chmod(0o640)
    lucid.onnx.export(nn.Tanh(), x, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == 0o640
    assert "Tanh" in {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}


def test_unwritable_path_is_a_clear_error_and_leaves_no_partial_file(tmp_path: Path) -> None:
    x = lucid.Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(LucidError, match="cannot write .*missing"):
        lucid.onnx.export(nn.ReLU(), x, tmp_path / "missing" / "m.onnx")
    target = tmp_path / "a_directory"
    target.mkdir()
    with pytest.raises(LucidError, match="cannot write .*a_directory"):
        lucid.onnx.export(nn.ReLU(), x, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_directory"]
    assert not list(target.iterdir())


def test_circular_pad_below_opset_19_names_the_line(tmp_path: Path) -> None:
    class Circular(nn.Module):
        def forward(self, x: lucid.Tensor) -> lucid.Tensor:
            return F.pad(x, (1, 1), mode="circular")

    with pytest.raises(LucidError, match=r"test_export_models.py:\d+: error: .*opset 19"):
        lucid.onnx.export(Circular(), lucid.Tensor(np.ones((2, 3, 4), np.float32)), tmp_path / "m")
    assert not list(tmp_path.iterdir())


def test_parameters_past_the_protobuf_limit_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lucid.onnx._export as exporter

    monkeypatch.setattr(exporter, "PROTOBUF_LIMIT", 4 * 6)  # Linear(3, 2): 6 float32 weights + 2
    with pytest.raises(LucidError, match="GiB.*external data"):
        lucid.onnx.export(
            nn.Linear(3, 2), lucid.Tensor(np.ones((2, 3), np.float32)), tmp_path / "m"
        )
    assert not list(tmp_path.iterdir())


def test_inputs_and_repeated_values_can_be_outputs(tmp_path: Path) -> None:
    fn = Identityish()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    lucid.onnx.export(fn, lucid.Tensor(x), tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)
    got = _session(tmp_path / "m.onnx").run(None, {"input_0": x})
    for g, w in zip(got, (x, x * 2.0, x * 2.0)):
        np.testing.assert_array_equal(g, w)


class Identityish(nn.Module):
    def forward(self, x: lucid.Tensor) -> tuple[lucid.Tensor, ...]:
        y = x * 2.0
        return x, y, y


def test_training_mode_batchnorm_is_refused(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(LucidError, match=r"running_mean.*model\.eval\(\) before exporting"):
        lucid.onnx.export(model, lucid.Tensor(np.ones((2, 3, 5, 5), np.float32)), tmp_path / "m")
    assert not list(tmp_path.iterdir())


def test_training_mode_dropout_is_onnx_dropout_in_training_mode(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Dropout(0.25))  # training mode: what the module does now
    x = np.ones((2, 4000), np.float32)
    lucid.onnx.export(model, lucid.Tensor(x), tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [i.name for i in proto.graph.input] == ["input_0"]  # lucid's seed input is not kept
    (got,) = _session(tmp_path / "m.onnx").run(None, {"input_0": x})
    assert set(np.unique(got)) <= {0.0, np.float32(1 / 0.75)}
    assert 0.2 < float((got == 0).mean()) < 0.3


class BatchDecision(nn.Module):
    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        return x * 2.0 if x.shape[0] > 1 else x


def test_batch_size_decisions_need_a_static_batch(tmp_path: Path) -> None:
    x = lucid.Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(TraceError, match="dynamic_batch=False"):
        lucid.onnx.export(BatchDecision(), x, tmp_path / "m.onnx")
    lucid.onnx.export(BatchDecision(), x, tmp_path / "m.onnx", dynamic_batch=False)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [2, 3]
    (got,) = _session(tmp_path / "m.onnx").run(None, {"input_0": x.data})
    np.testing.assert_array_equal(got, x.data * 2.0)


def test_names_and_opset_are_checked(tmp_path: Path) -> None:
    x = lucid.Tensor(np.ones((2, 3), np.float32))
    lin = nn.Linear(3, 2)
    lucid.onnx.export(lin, x, tmp_path / "m.onnx", input_names=["x"], output_names=["y"])
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output]) == (
        ["x"],
        ["y"],
    )
    # names like the exporter's own intermediate names (v0, v1, ...) stay the caller's
    lucid.onnx.export(lin, x, tmp_path / "v.onnx", input_names=["v0"], output_names=["v1"])
    (got,) = _session(tmp_path / "v.onnx").run(["v1"], {"v0": x.data})
    np.testing.assert_allclose(got, lin(x).data, rtol=1e-6)
    bad: list[dict[str, Any]] = [
        {"opset": 16},
        {"opset": "17"},
        {"input_names": ["a", "b"]},
        {"input_names": "x"},
        {"output_names": ["weight"]},  # a parameter's name
        {"input_names": ["z"], "output_names": ["z"]},
    ]
    for kwargs in bad:
        with pytest.raises(LucidError, match="opset|names"):
            lucid.onnx.export(lin, x, tmp_path / "bad.onnx", **kwargs)
    assert not (tmp_path / "bad.onnx").exists()


def test_import_lucid_does_not_import_onnx() -> None:
    code = "import sys, lucid; m = lucid.onnx; print('onnx' in sys.modules, m.__name__)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env
    )
    assert out.stdout.split() == ["False", "lucid.onnx"], out.stderr


def test_missing_onnx_package_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'lucid\[onnx\]'"):
        lucid.onnx.export(nn.ReLU(), lucid.Tensor(np.ones((2, 3), np.float32)), tmp_path / "m")


def test_fused_nodes_are_inlined() -> None:
    """export runs no fusion pass, but a graph with fused nodes (here from lucid.compile's
    pipeline) translates too: each body is inlined, op by op."""
    from lucid.ir.passes import PassManager, default_pipeline
    from lucid.ir.trace import trace
    from lucid.onnx._export import Emitter

    lucid.random.seed(7)
    model = nn.Sequential(nn.Linear(8, 16), nn.HardSwish(), nn.Linear(16, 4), nn.ReLU())
    x = np.random.default_rng(3).standard_normal((3, 8)).astype(np.float32)
    graph = PassManager(default_pipeline()).run(trace(model, lucid.Tensor(x), dynamic_batch=True))[
        0
    ]
    assert any(node.body is not None for node in graph.nodes)
    arrays = [np.asarray(dict(model.named_parameters())[p.hint].data) for p in graph.params]
    proto = Emitter(onnx, 17).model(graph, arrays, ["input_0"], ["output_0"], 1)
    onnx.checker.check_model(proto, full_check=True)
    assert "HardSwish" in {n.op_type for n in proto.graph.node}
    (got,) = ort.InferenceSession(proto.SerializeToString()).run(None, {"input_0": x})
    np.testing.assert_allclose(got, model(lucid.Tensor(x)).data, rtol=1e-5, atol=1e-5)


def test_a_scalar_input_has_no_batch_dim(tmp_path: Path) -> None:
    class Tempered(nn.Module):
        def forward(self, x: lucid.Tensor, t: lucid.Tensor) -> lucid.Tensor:
            return F.softmax(x / t, 1)

    example = [lucid.Tensor(np.ones((2, 4), np.float32)), lucid.Tensor(np.array(2.0, np.float32))]
    lucid.onnx.export(Tempered(), example, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    shapes = [
        [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in proto.graph.input
    ]
    assert shapes == [["N", 4], []]
    x, t = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32), np.float32(0.5)
    (got,) = _session(tmp_path / "m.onnx").run(None, {"input_0": x, "input_1": np.array(t)})
    want = Tempered()(lucid.Tensor(x), lucid.Tensor(np.array(t))).data
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
