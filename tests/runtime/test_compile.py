"""lucid.compile: results equal eager, per-signature compilation, live parameters, input checks."""

from __future__ import annotations

import threading
from functools import partial

import numpy as np
import pytest

import lucid
import lucid.optim
from lucid import nn
from lucid.errors import InputError
from lucid.runtime._fastpath import make_fast
from lucid.runtime.compiled import CompiledModule
from lucid.runtime.compiled import compile as lucid_compile
from tests.models import SeedModel
from tests.runtime.test_compile_models import BACKENDS, as_f64, count_prepares, mlp

MODELS = {
    "seed": SeedModel,
    "mlp_relu": partial(lambda dtype: mlp([7, 16, 16, 3], nn.ReLU, dtype)),
    "mlp_hardswish": partial(lambda dtype: mlp([5, 33, 9], nn.HardSwish, dtype)),
    "mlp_wide": partial(lambda dtype: mlp([64, 128, 64, 10], nn.HardSwish, dtype)),
}


# Every model with a symbolic batch; static shapes (one build per batch size) on the seed only,
# to keep C builds (1-3 s each) within the suite's time budget.
CASES = [(name, True) for name in sorted(MODELS)] + [("seed", False)]


@pytest.mark.parametrize("backend", BACKENDS)
# the float64 twins build a second C module per case: the full suite runs them
@pytest.mark.parametrize("dtype", [np.float32, pytest.param(np.float64, marks=pytest.mark.slow)])
@pytest.mark.parametrize(("name", "dynamic"), CASES)
def test_matches_eager_and_f64_reference(name, dynamic, dtype, backend):
    lucid.random.seed(1)
    make = MODELS[name]
    model = make(dtype).eval()
    ref_model = as_f64(model, make)
    cm = lucid.compile(model, backend=backend, dynamic_batch=dynamic)
    width = model.fc1.in_features if name == "seed" else model[0].in_features
    rng = np.random.default_rng(0)
    for batch in (1, 4) if not dynamic else (1, 4, 3):
        x = (rng.standard_normal((batch, width)) * 3).astype(dtype)
        got = cm(lucid.Tensor(x))
        assert isinstance(got, lucid.Tensor) and got.dtype == dtype
        assert got.requires_grad  # eval mode with parameters requiring grad, as in eager
        ref = ref_model(lucid.Tensor(x.astype(np.float64))).data
        tol = (
            {"rtol": 1.3e-6, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-7, "atol": 1e-12}
        )
        np.testing.assert_allclose(got.data, ref, **tol)
        np.testing.assert_allclose(got.data, model(lucid.Tensor(x)).data, **tol)
    assert len(cm.signatures) == (1 if dynamic else 2)


class TwoHeads(nn.Module):
    def __init__(self, kind: type) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.kind = kind

    def forward(self, x, y):
        h = self.fc(x)
        return self.kind([h * y, h.sum(1)])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", [tuple, list])
def test_outputs_mirror_what_forward_returned(kind, backend):
    model = TwoHeads(kind).eval()
    cm = lucid.compile(model, backend=backend, dynamic_batch=True)
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    y = np.float32(2) * np.ones((5, 3), np.float32)
    for _ in range(2):  # first call (slow path), then the fast path
        got = cm(x, lucid.Tensor(y))
        assert type(got) is kind and len(got) == 2
        want = model(lucid.Tensor(x), lucid.Tensor(y))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.data, w.data, rtol=1.3e-6, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_compile_per_signature(backend, monkeypatch):
    prepared = count_prepares(monkeypatch, backend)
    cm = lucid.compile(SeedModel().eval(), backend=backend)
    x = np.ones((1, 3), np.float32)
    for _ in range(3):
        cm(x)
    assert len(prepared) == 1
    cm(np.ones((4, 3), np.float32))  # new shape: new graph
    assert len(prepared) == 2
    cm(x)  # the first signature is still there
    assert len(prepared) == 2
    cm.train()
    with lucid.no_grad():  # forward only: a grad call would build a backward graph too
        cm(x)  # train mode is another signature
    assert len(prepared) == 3 and [s.training for s in cm.signatures] == [False, False, True]


@pytest.mark.parametrize("backend", BACKENDS)
def test_dynamic_batch_reuses_one_graph(backend, monkeypatch):
    prepared = count_prepares(monkeypatch, backend)
    model = SeedModel().eval()
    cm = lucid.compile(model, backend=backend, dynamic_batch=True)
    for batch in (1, 2, 7, 64, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3)).astype(np.float32)
        assert cm(x).shape == (batch, 2)
    assert len(prepared) == 1
    assert str(cm.signatures[0]) == "(f32[N,3]) eval"
    empty = cm(np.zeros((0, 3), np.float32))  # batch 0: no C call (it requires batch >= 1)
    assert empty.shape == (0, 2) and len(prepared) == 1


@pytest.mark.needs_cc
def test_dynamic_batch_builds_one_c_module(monkeypatch):
    prepared = count_prepares(monkeypatch, "c")  # built, or loaded through the warm index
    cm = lucid.compile(SeedModel().eval(), dynamic_batch=True)
    for batch in (1, 9, 100):
        cm(np.ones((batch, 3), np.float32))
    assert len(prepared) == 1 and len({e.forward.build_info.key for e in cm._order}) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameter_updates_are_seen_without_recompiling(backend, monkeypatch):
    prepared = count_prepares(monkeypatch, backend)
    lucid.random.seed(3)
    model = SeedModel().eval()
    cm = lucid.compile(model, backend=backend)
    x = lucid.Tensor(np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32))

    def check() -> None:
        for _ in range(2):  # slow path after a change, then the fast path
            np.testing.assert_allclose(cm(x).data, model(x).data, rtol=1e-6, atol=1e-6)

    check()
    model.fc1.weight.data[...] *= -2  # in place
    check()
    state = {k: v + 0.5 for k, v in model.state_dict().items()}
    cm.load_state_dict(state)
    check()
    model.fc2.bias.data = np.array([10.0, -10.0], np.float32)  # a replaced array
    check()
    model.fc1.bias = nn.Parameter(np.arange(5, dtype=np.float32))  # a replaced Parameter
    check()
    model.fc2.weight.data = np.asfortranarray(model.fc2.weight.data * 3)  # non-contiguous
    check()
    opt = lucid.optim.SGD(cm.parameters(), lr=0.1)
    loss = (model(x) * model(x)).sum()
    loss.backward()
    opt.step()
    check()
    assert len(prepared) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameter_of_another_shape_is_an_input_error(backend):
    model = SeedModel().eval()
    cm = lucid.compile(model, backend=backend)
    x = np.ones((1, 3), np.float32)
    cm(x)
    cm(x)
    model.fc1.weight.data = np.ones((6, 3), np.float32)
    with pytest.raises(
        InputError, match=r"param 0 \(fc1.weight\): expected f32\[5,3\], got f32\[6,3\]"
    ):
        cm(x)
    model.fc1.weight.data = np.ones((5, 3), np.float32)
    model.fc1.weight.data.shape = (3, 5)  # same array, same size, new shape
    with pytest.raises(InputError, match=r"expected f32\[5,3\], got f32\[3,5\]"):
        cm(x)
    model.fc1.weight.data = np.ones((5, 3), np.float64)
    with pytest.raises(InputError, match=r"expected f32\[5,3\], got f64\[5,3\]"):
        cm(x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_inputs_raise_before_any_run(backend, monkeypatch):
    cm = lucid.compile(SeedModel().eval(), backend=backend, dynamic_batch=True)
    cm(np.ones((2, 3), np.float32))
    entry = cm.entry()
    runs = []
    monkeypatch.setattr(entry.forward, "run", lambda *a: runs.append(a))
    if backend == "c":
        monkeypatch.setattr(entry.forward, "call_objects", lambda *a: runs.append(a))
        monkeypatch.setattr(
            entry, "fast", make_fast(entry, cm.module, cm._differentiable_later, cm._late_backward)
        )
        monkeypatch.setattr(cm, "_fast", entry.fast)
    cases = {
        r"input 0 \(x\): expected f32\[N,3\], got f64\[2,3\]": np.ones((2, 3)),
        r"input 0 \(x\): expected f32\[N,3\], got f32\[2,4\]": np.ones((2, 4), np.float32),
        r"input 0 \(x\): expected f32\[N,3\], got f32\[3\]": np.ones(3, np.float32),
        r"input 0 \(x\): expected f32\[N,3\], got i64\[2,3\]": np.ones((2, 3), np.int64),
        r"expected 1 input\(s\), got 2": (np.ones((2, 3), np.float32),) * 2,
    }
    for message, bad in cases.items():
        with pytest.raises(InputError, match=message):
            cm(*bad) if isinstance(bad, tuple) else cm(bad)
    assert runs == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_inconsistent_batch_between_inputs(backend):
    cm = lucid.compile(TwoHeads(tuple).eval(), backend=backend, dynamic_batch=True)
    cm(np.ones((2, 4), np.float32), np.ones((2, 3), np.float32))
    with pytest.raises(InputError, match=r"input 1 \(y\): expected f32\[N,3\], got f32\[5,3\]"):
        cm(np.ones((2, 4), np.float32), np.ones((5, 3), np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_noncontiguous_and_foreign_inputs(backend):
    model = SeedModel().eval()
    cm = lucid.compile(model, backend=backend, dynamic_batch=True)
    base = np.random.default_rng(4).standard_normal((8, 6)).astype(np.float32)
    for x in (base[::2, ::2], np.asfortranarray(base[:, :3]), base[:, :3].tolist()):
        want = model(lucid.Tensor(np.asarray(x, np.float32))).data
        if isinstance(x, list):
            x = np.asarray(x, np.float32)
        np.testing.assert_allclose(cm(x).data, want, rtol=1e-6, atol=1e-6)


@pytest.mark.needs_cc
def test_contiguous_inputs_are_passed_without_copy(monkeypatch):
    cm = lucid.compile(SeedModel().eval(), dynamic_batch=True)
    x = np.random.default_rng(5).standard_normal((3, 3)).astype(np.float32)
    cm(x)
    entry = cm.entry()
    real, seen = entry.forward.call_objects, []

    def spy(*args):
        seen.append(args[0])
        return real(*args)

    monkeypatch.setattr(entry.forward, "call_objects", spy)
    monkeypatch.setattr(
        entry, "fast", make_fast(entry, cm.module, cm._differentiable_later, cm._late_backward)
    )
    monkeypatch.setattr(cm, "_fast", entry.fast)
    t = lucid.Tensor(x)
    cm(t)  # fast path
    assert seen[-1] == id(t.data)
    assert entry.forward.array_data(seen[-1]) == t.data.ctypes.data  # the C reads x's buffer
    strided = np.repeat(x, 2, axis=1)[:, ::2]
    out = cm(strided)  # slow path: a contiguous copy goes to the C
    assert seen[-1] != id(strided)
    np.testing.assert_array_equal(out.data, cm(x).data)


def test_requires_grad_inputs_run_forward_only_under_no_grad():
    model = SeedModel().eval()
    cm = lucid.compile(model, backend="interpreter")
    x = lucid.Tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    with lucid.no_grad():  # training through compile: tests/runtime/test_train*.py
        out = cm(x)
    assert not out.requires_grad and out.grad is None
    np.testing.assert_allclose(out.data, model(x).data, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_attribute_name_cannot_inject_code(backend):
    name = "fc1 */ int x = 1; /*"
    model = nn.Module()
    setattr(model, name, nn.Linear(3, 4))
    model.forward = lambda x: getattr(model, name)(x)  # type: ignore[method-assign]
    model.eval()
    cm = lucid.compile(model, backend=backend)
    x = np.random.default_rng(6).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(cm(x).data, model(lucid.Tensor(x)).data, rtol=1e-6, atol=1e-6)
    if backend == "c":
        assert name not in cm.c_source  # its "*/" never reaches the C, even in a comment


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_threads_calling_at_once(backend):
    lucid.random.seed(7)
    model = mlp([32, 64, 8]).eval()
    cm = lucid.compile(model, backend=backend, dynamic_batch=True)
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((b, 32)).astype(np.float32) for b in (1, 16, 33, 5)]
    want = [model(lucid.Tensor(x)).data for x in xs]
    cm(xs[0])
    errors: list[str] = []
    barrier = threading.Barrier(2)

    def worker(k: int) -> None:
        barrier.wait()
        for i in range(200):
            j = (i + k) % len(xs)
            got = cm(xs[j]).data
            if got.shape != want[j].shape or not np.allclose(got, want[j], rtol=1e-5, atol=1e-5):
                errors.append(f"thread {k} call {i}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp_mode_unchanged(backend):
    cm = lucid.compile(SeedModel().eval(), backend=backend)
    cm(np.ones((1, 3), np.float32))
    assert np.float32(1e-38) * np.float32(1e-3) != 0  # subnormals: no flush-to-zero


@pytest.mark.needs_cc
def test_debug_dir_holds_ir_source_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LUCID_DEBUG_DIR", str(tmp_path))
    cm = lucid.compile(SeedModel().eval(), dynamic_batch=True)
    cm(np.ones((2, 3), np.float32))
    cm(np.ones((2, 3), np.float64).astype(np.float32))
    (sub,) = tmp_path.iterdir()  # one graph, one directory
    names = sorted(p.name for p in sub.iterdir())
    assert "00-traced.lir" in names and "signature.txt" in names
    assert any(n.endswith("-optimized.lir") for n in names)
    assert (sub / "signature.txt").read_text() == "(f32[N,3]) eval\n"
    assert "linear" in (sub / "00-traced.lir").read_text()
    assert (sub / "source.c").read_text() == cm.c_source
    assert "cc" in (sub / "build.sh").read_text() or "gcc" in (sub / "build.sh").read_text()


def test_options_are_validated():
    with pytest.raises(
        ValueError, match="valid options: fusion, passes, isa, cflags, cc, debug_dir"
    ):
        lucid.compile(SeedModel(), options={"fuse": False})
    with pytest.raises(
        ValueError, match="unknown backend 'cuda'; available backends: .*c.*interpreter"
    ):
        lucid.compile(SeedModel(), backend="cuda")
    with pytest.raises(ValueError, match="-ffast-math is not allowed"):
        lucid.compile(SeedModel(), options={"cflags": ["-O2", "-ffast-math"]})
    with pytest.raises(TypeError, match="expected a lucid.nn.Module or a training-step function"):
        lucid.compile(3)


def test_inspection_and_passthrough():
    model = SeedModel().eval()
    cm = lucid.compile(model, backend="interpreter", options={"passes": ["dce"]})
    assert isinstance(cm, CompiledModule) and cm.module is model
    cm(np.ones((1, 3), np.float32))
    assert list(cm.stages()) == ["traced", "dce", "optimized"]
    assert cm.c_source is None and cm.build_info is None
    assert [id(p) for p in cm.parameters()] == [id(p) for p in model.parameters()]
    assert "SeedModel" in repr(cm) and "(f32[1,3]) eval" in repr(cm)
    assert cm.train() is cm and model.training and not cm.eval().module.training
    assert cm.stages(cm.signatures[0])["optimized"] is cm.graph()


def test_lucid_compile_lowering_with_fusion_off_is_equal():
    model = mlp([6, 12, 4]).eval()
    x = np.random.default_rng(8).standard_normal((3, 6)).astype(np.float32)
    a = lucid.compile(model, backend="interpreter", options={"fusion": False})(x)
    b = lucid_compile(model, backend="interpreter")(x)
    np.testing.assert_array_equal(a.data, b.data)
