"""`lucid.compile(step)`: a whole training step compiled into one program, against eager.

Each test runs the same step function twice from the same weights and data: eagerly (forward,
loss.backward(), opt.step() on the tape and NumPy) and compiled; parameters, losses, buffers
and `opt.state_dict()` must agree (float64 within 1e-12, float32 within float32 tolerance).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
import lucid.optim
from lucid import nn
from lucid.errors import RecompileWarning, TraceError

pytestmark = pytest.mark.needs_cc

F64 = {"rtol": 1e-12, "atol": 1e-12}
F32 = {"rtol": 2e-5, "atol": 2e-6}


def mlp(dtype: Any = np.float64, n_in: int = 13, n_out: int = 5) -> nn.Module:
    """Linear -> HardSwish -> Linear, seeded, in `dtype`."""
    lucid.random.seed(3)
    model = nn.Sequential(nn.Linear(n_in, 16), nn.HardSwish(), nn.Linear(16, n_out))
    for p in model.parameters():
        p.data = p.data.astype(dtype)
    return model


def convnet(dtype: Any = np.float64) -> nn.Module:
    """Conv -> BatchNorm (training: running statistics written) -> ReLU -> pool -> Linear."""
    lucid.random.seed(4)
    model = nn.Sequential(
        # no conv bias: BatchNorm cancels it, so its gradient is rounding noise, which Adam's
        # m / sqrt(v) would blow up into a difference of summation order
        nn.Conv2d(2, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 4),
    )
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.data.dtype.kind == "f":
            t.data = t.data.astype(dtype)
    return model


def data(
    dtype: Any, steps: int, rows: int = 7, shape: tuple[int, ...] = (13,), classes: int = 5
) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [
        (rng.standard_normal((rows, *shape)).astype(dtype), rng.integers(0, classes, rows))
        for _ in range(steps)
    ]


def make_step(model: nn.Module, opt: Any, loss: str = "ce") -> Callable[..., Any]:
    def step(x, y):
        opt.zero_grad()
        out = model(x)
        if loss == "ce":
            value = F.cross_entropy(out, y)
        else:
            value = F.mse_loss(out, lucid.Tensor(np.eye(out.shape[1], dtype=x.dtype)[y.data]))
        value.backward()
        opt.step()
        return value

    return step


def twin_runs(
    make_model: Callable[[], nn.Module],
    make_opt: Callable[[Any], Any],
    batches: list[tuple[np.ndarray, np.ndarray]],
    backend: str = "c",
    between: Callable[[Any, int], None] | None = None,
) -> list[tuple[list[np.ndarray], dict[str, np.ndarray], dict[str, Any], Any]]:
    """(losses, state_dict, opt.state_dict(), compiled step or None) eager, then compiled."""
    runs = []
    for compiled in (False, True):
        model = make_model()
        opt = make_opt(model.parameters())
        step = make_step(model, opt)
        fn = lucid.compile(step, backend=backend) if compiled else step
        losses = []
        for k, (x, y) in enumerate(batches):
            losses.append(fn(lucid.Tensor(x), lucid.Tensor(y)).data.copy())
            if between is not None:
                between(opt, k)
        runs.append((losses, model.state_dict(), opt.state_dict(), fn if compiled else None))
    return runs


def assert_same(eager: Any, compiled: Any, tol: dict[str, float]) -> None:
    (l0, s0, o0, _), (l1, s1, o1, _) = eager, compiled
    np.testing.assert_allclose(np.array(l1), np.array(l0), **tol)
    assert s0.keys() == s1.keys()
    for k in s0:
        np.testing.assert_allclose(s1[k], s0[k], err_msg=k, **tol)
    assert o0["param_groups"] == o1["param_groups"]
    assert o0["state"].keys() == o1["state"].keys()
    for i, st in o0["state"].items():
        assert st.keys() == o1["state"][i].keys()
        for k, v in st.items():
            np.testing.assert_allclose(o1["state"][i][k], v, err_msg=f"state {i}.{k}", **tol)


OPTIMIZERS = {
    "sgd": lambda ps: lucid.optim.SGD(ps, lr=0.1),
    "sgd-momentum": lambda ps: lucid.optim.SGD(ps, lr=0.1, momentum=0.9),
    "sgd-dampening": lambda ps: lucid.optim.SGD(ps, lr=0.1, momentum=0.8, dampening=0.25),
    "sgd-nesterov-decay": lambda ps: lucid.optim.SGD(
        ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2
    ),
    "adam": lambda ps: lucid.optim.Adam(ps, lr=0.01),
    "adam-decay": lambda ps: lucid.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
    "adamw": lambda ps: lucid.optim.AdamW(ps, lr=0.01),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float64_step_equals_eager(name):
    batches = data(np.float64, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecompileWarning)
        eager, compiled = twin_runs(lambda: mlp(np.float64), OPTIMIZERS[name], batches)
    assert_same(eager, compiled, F64)
    # one program serves every step; SGD with dampening has its first step apart (eager's
    # first step copies d into the buffer, later ones damp it), which it builds without a warning
    assert compiled[3].compiles == (2 if name == "sgd-dampening" else 1)


@pytest.mark.parametrize("name", ["sgd-momentum", "adam", "adamw"])
def test_float32_step_equals_eager(name):
    batches = data(np.float32, 4)
    eager, compiled = twin_runs(lambda: mlp(np.float32), OPTIMIZERS[name], batches)
    assert_same(eager, compiled, F32)


@pytest.mark.parametrize("name", ["sgd-dampening", "adamw"])
def test_conv_batchnorm_step_writes_running_statistics(name):
    batches = data(np.float64, 3, rows=4, shape=(2, 5, 6), classes=4)
    eager, compiled = twin_runs(lambda: convnet(np.float64), OPTIMIZERS[name], batches)
    assert "1.running_mean" in compiled[1]
    assert not np.allclose(compiled[1]["1.running_mean"], 0)  # statistics moved
    assert_same(eager, compiled, F64)


@pytest.mark.parametrize("rows", [1, 7])
def test_odd_shapes(rows):
    """A 1-row batch and 7x13 inputs into a 13 -> 16 -> 3 model: no tile is full."""
    batches = data(np.float32, 3, rows=rows, classes=3)
    eager, compiled = twin_runs(lambda: mlp(np.float32, n_out=3), OPTIMIZERS["adam-decay"], batches)
    assert_same(eager, compiled, F32)


def test_scheduler_changes_lr_without_recompiling():
    batches = data(np.float64, 4)

    def make_opt(ps):
        opt = lucid.optim.SGD(ps, lr=0.2, momentum=0.5)
        opt.scheduler = lucid.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        return opt

    with warnings.catch_warnings():
        warnings.simplefilter("error", RecompileWarning)
        eager, compiled = twin_runs(
            lambda: mlp(), make_opt, batches, between=lambda opt, k: opt.scheduler.step()
        )
    assert compiled[2]["param_groups"][0]["lr"] == 0.2 * 0.5**4
    assert_same(eager, compiled, F64)
    assert compiled[3].compiles == 1


def test_changed_momentum_recompiles_with_a_warning():
    batches = data(np.float64, 4)

    def between(opt, k):
        if k == 1:
            opt.param_groups[0]["momentum"] = 0.3

    with pytest.warns(RecompileWarning, match=r"\['momentum'\] changed 0.9 -> 0.3"):
        eager, compiled = twin_runs(
            lambda: mlp(), OPTIMIZERS["sgd-momentum"], batches, between=between
        )
    assert_same(eager, compiled, F64)
    assert compiled[3].compiles == 2


def test_param_groups_frozen_and_unused_params():
    """Two groups with their own lr; a frozen layer and a parameter the loss never reaches
    are left alone (eager gives them no grad, so step skips them), state and all."""
    batches = data(np.float64, 3)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp()
            self.unused = nn.Linear(2, 2)

        def forward(self, x):
            return self.body(x)

    def make_model():
        model = Net()
        model.body[0].bias.requires_grad = False
        return model

    def make_opt(ps):
        ps = list(ps)
        return lucid.optim.Adam([{"params": ps[:2], "lr": 0.05}, {"params": ps[2:]}], lr=0.01)

    eager, compiled = twin_runs(make_model, make_opt, batches)
    assert_same(eager, compiled, F64)
    start = make_model().state_dict()
    for key in ("body.0.bias", "unused.weight", "unused.bias"):
        np.testing.assert_array_equal(compiled[1][key], start[key])
    assert 1 not in compiled[2]["state"] or not compiled[2]["state"][1]["exp_avg"].any()


def test_eager_steps_continue_from_compiled_ones():
    """Compiled steps, then eager ones: the same as eager all along (momentum buffer and Adam
    step count carry over)."""
    batches = data(np.float64, 4)
    for make_opt in (OPTIMIZERS["sgd-dampening"], OPTIMIZERS["adamw"]):
        results = []
        for compiled in (False, True):
            model = mlp()
            opt = make_opt(model.parameters())
            step = make_step(model, opt)
            fast = lucid.compile(step) if compiled else step
            for k, (x, y) in enumerate(batches):
                (fast if k < 2 else step)(lucid.Tensor(x), lucid.Tensor(y))
            results.append(model.state_dict())
        for key in results[0]:
            np.testing.assert_allclose(results[1][key], results[0][key], err_msg=key, **F64)


def test_grads_are_not_stored_and_versions_move():
    model = mlp()
    opt = lucid.optim.SGD(model.parameters(), lr=0.1)
    step = lucid.compile(make_step(model, opt), backend="interpreter")
    before = [p._version for p in model.parameters()]
    ((x, y),) = data(np.float64, 1)
    step(x, y)
    assert all(p.grad is None for p in model.parameters())
    assert [p._version for p in model.parameters()] == [v + 1 for v in before]


def test_step_graph_is_one_program():
    model = mlp(np.float32)
    opt = lucid.optim.Adam(model.parameters(), lr=0.01)
    step = lucid.compile(make_step(model, opt))
    ((x, y),) = data(np.float32, 1)
    step(x, y)
    graph = step.stages()["step"]
    ops = [n.op for n in graph.nodes]
    assert "cross_entropy_grad" in ops and "sqrt" in ops  # backward and update in one graph
    assert [v.hint for v in graph.inputs] == ["x", "y", "lr0", "bias10", "bias20"]
    assert len(graph.outputs) == 1 + 4 + 2 * 4  # loss, new params, new moments


# -- what the step mode cannot honour: clear errors naming the user's line ------------------


def _trace_error(fn: Callable[..., Any], *args: Any) -> str:
    with pytest.raises(TraceError) as info:
        lucid.compile(fn, backend="interpreter")(*args)
    return str(info.value)


def test_errors_name_the_line():
    model = mlp()
    opt = lucid.optim.SGD(model.parameters(), lr=0.1)
    ((x, y),) = data(np.float64, 1)

    def twice(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        loss.backward()  # the second
        opt.step()

    message = _trace_error(twice, x, y)
    assert "test_step.py" in message and "backward() is called a second time" in message
    assert f":{twice.__code__.co_firstlineno + 3}:" in message

    def no_backward(x, y):
        F.cross_entropy(model(x), y)
        opt.step()

    assert "step() before any loss.backward()" in _trace_error(no_backward, x, y)

    def not_scalar(x, y):
        model(x).backward()
        opt.step()

    assert "a loss of type f64[7,5]" in _trace_error(not_scalar, x, y)

    def reads_grad(x, y):
        F.cross_entropy(model(x), y).backward()
        scale = model[0].weight.grad * 2  # the read
        opt.step()
        return scale

    message = _trace_error(reads_grad, x, y)
    assert "reads the .grad of 0.weight" in message
    assert f":{reads_grad.__code__.co_firstlineno + 2}:" in message
    assert all(p.grad is None for p in model.parameters())  # the stand-ins are gone

    def zero_between(x, y):
        F.cross_entropy(model(x), y).backward()
        opt.zero_grad()
        opt.step()

    assert "zero_grad() between loss.backward() and its step()" in _trace_error(zero_between, x, y)

    def no_step(x, y):
        F.cross_entropy(model(x), y).backward()

    assert "no optimizer's step()" in _trace_error(no_step, x, y)


def test_unsupported_optimizer_type():
    model = mlp()

    class Mine(lucid.optim.SGD):
        def _update(self, i, p):
            p.data -= 2 * p.grad

    ((x, y),) = data(np.float64, 1)
    message = _trace_error(make_step(model, Mine(model.parameters(), lr=0.1)), x, y)
    assert "knows the updates of SGD, Adam, AdamW (lucid.optim), not Mine's" in message


def test_old_gradients_are_refused_when_not_zeroed():
    model = mlp()
    opt = lucid.optim.SGD(model.parameters(), lr=0.1)

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    ((x, y),) = data(np.float64, 1)
    compiled = lucid.compile(step, backend="interpreter")
    compiled(x, y)  # no grads held: fine
    next(iter(model.parameters())).grad = np.ones((16, 13))
    with pytest.raises(lucid.errors.LucidError, match=r"parameter\(s\) \[0\] hold gradients"):
        compiled(x, y)


def test_module_trace_refuses_backward_inside_forward():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 1)

        def forward(self, x):
            y = self.fc(x).sum()
            y.backward()
            return y

    with pytest.raises(TraceError, match=r"backward\(\) inside a traced forward"):
        lucid.compile(Bad().eval(), backend="interpreter")(np.ones((2, 3), np.float32))


# -- the update fused into the weight-gradient GEMM's epilogue ------------------------------


def _wide(dtype: Any = np.float64) -> nn.Module:
    """19 -> 37 -> 3: no dim a multiple of a register tile."""
    lucid.random.seed(5)
    model = nn.Sequential(nn.Linear(19, 37), nn.HardSwish(), nn.Linear(37, 3))
    for p in model.parameters():
        p.data = p.data.astype(dtype)
    return model


@pytest.mark.parametrize("name", ["sgd", "sgd-momentum"])
def test_float32_sgd_in_the_gemm_epilogue(name):
    batches = data(np.float32, 2, rows=401, shape=(19,), classes=3)
    eager, compiled = twin_runs(lambda: _wide(np.float32), OPTIMIZERS[name], batches)
    assert_same(eager, compiled, F32)
    graph = compiled[3].graph()
    assert sum(n.op == "fused_gemm" for n in graph.nodes) >= 3  # dX and both dW GEMMs


@pytest.mark.parametrize("name", ["sgd", "sgd-momentum", "sgd-nesterov-decay"])
def test_sgd_update_in_the_gemm_epilogue_across_k_blocks(name):
    """401 rows: the weight gradient's K (the batch) spans two K blocks (kc <= 512), and the
    update must run once the whole sum for a tile is done; 37 x 19 and 3 x 37 tiles have
    edges. For plain SGD and momentum SGD the weight update (or the new momentum buffer) is
    the fused GEMM's result: no gradient buffer is materialized."""
    batches = data(np.float64, 2, rows=401, shape=(19,), classes=3)
    eager, compiled = twin_runs(_wide, OPTIMIZERS[name], batches)
    assert_same(eager, compiled, F64)
    graph = compiled[3].graph()
    producer = {r: n for n in graph.nodes for r in n.results}
    weights = [1, 3] if name == "sgd" else [5, 7]  # new weights, or new momentum buffers
    if name != "sgd-nesterov-decay":  # nesterov reads the gradient twice: it is stored
        for k in weights:
            node = producer[graph.outputs[k]]
            assert node.op == "fused_gemm", (k, node.op)
            assert {"add" if name != "sgd" else "sub"} <= {n.op for n in node.body.nodes}


# -- what a compiled step draws and guards --------------------------------------------------


def test_dropout_masks_are_eagers():
    """A training-mode Dropout's seed is a run-time input drawn from lucid.random at every
    call, in eager's order, so a seeded run gives eager's masks step after step."""
    batches = data(np.float64, 3)

    def make_model():
        lucid.random.seed(6)
        model = nn.Sequential(nn.Linear(13, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 5))
        for p in model.parameters():
            p.data = p.data.astype(np.float64)
        return model

    eager, compiled = twin_runs(make_model, OPTIMIZERS["sgd-momentum"], batches)
    assert_same(eager, compiled, F64)
    assert compiled[3].compiles == 1


def test_eval_mode_and_a_replaced_layer_recompile():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(13, 5), nn.HardSwish()

        def forward(self, x):
            return self.act(self.fc(x))

    lucid.random.seed(7)
    model = Net()
    opt = lucid.optim.SGD(model.parameters(), lr=0.1)
    step = lucid.compile(make_step(model, opt), backend="interpreter")
    ((x, y),) = data(np.float32, 1)
    step(x, y)
    model.eval()
    with pytest.warns(RecompileWarning, match="train/eval modes of Net"):
        step(x, y)
    model.train()
    step(x, y)  # the train-mode entry again: no warning, no build
    assert step.compiles == 2
    model.act = nn.ReLU()  # a structure change: the entries of this model are dropped
    with pytest.warns(RecompileWarning, match="the structure of Net changed"):
        step(x, y)
    assert step.compiles == 3
    assert "relu" in [n.op for n in step.stages()["step"].nodes]


@pytest.mark.parametrize(
    ("name", "dtype"), [("adam", np.float64), ("adamw", np.float64), ("adam-decay", np.float32)]
)
def test_adam_update_in_the_gemm_epilogue_across_k_blocks(name, dtype):
    """Adam reads the weight gradient three times (its moments, then the update): the whole
    update is the weight-gradient GEMM's epilogue, which stores the new moments and the new
    weight (three results) once the sum over both K blocks of a tile is done."""
    batches = data(dtype, 3, rows=401, shape=(19,), classes=3)
    eager, compiled = twin_runs(lambda: _wide(dtype), OPTIMIZERS[name], batches)
    assert_same(eager, compiled, F64 if dtype == np.float64 else F32)
    graph = compiled[3].graph()
    producer = {r: n for n in graph.nodes for r in n.results}
    for k in (1, 3):  # the two weights: new value, new exp_avg, new exp_avg_sq from one GEMM
        node = producer[graph.outputs[k]]
        assert node.op == "fused_gemm" and "sqrt" in [n.op for n in node.body.nodes]
        assert len(node.results) == 3
        assert producer[graph.outputs[5 + 2 * (k - 1)]] is node  # exp_avg of weight k
    assert "matmul" not in [n.op for n in graph.nodes]  # no unfused GEMM: no dW stored


def _tail_graph(
    also_output: bool, m: int = 5, k: int = 3, n: int = 4, dtype: Any = np.float64
) -> Any:
    """x[m,k] @ w[k,n] read twice by an elementwise tail with full and scalar operands."""
    from lucid.ir.core import Builder
    from lucid.ir.types import DType, TensorType

    dt = DType.from_numpy(np.dtype(dtype))
    b = Builder("f")
    x = b.input(TensorType(dt, (m, k)), "x")
    w = b.input(TensorType(dt, (k, n)), "w")
    acc = b.input(TensorType(dt, (m, n)), "m")
    s = b.input(TensorType(dt, ()), "s")
    g = b.op("matmul", [x, w])
    first = b.op("add", [acc, b.op("mul", [s, g])])
    second = b.op("sub", [b.op("mul", [g, g]), first])
    b.output(first, second, *([g] if also_output else []))
    return b.build()


@pytest.mark.parametrize("also_output", [False, True])
def test_fuse_epilogue_absorbs_a_tail_only_when_nothing_else_reads_the_gemm(also_output):
    from lucid.ir.passes import PassManager

    graph = _tail_graph(also_output)
    fused = PassManager(["fuse_epilogue"]).run(graph)[0]
    gemms = [n for n in fused.nodes if n.op == "fused_gemm"]
    if also_output:  # the product is stored anyway: no tail (the chain rule holds)
        assert not gemms
        return
    (node,) = gemms
    assert [n.op for n in node.body.nodes] == ["matmul", "mul", "add", "mul", "sub"]
    assert len(node.results) == 2


@pytest.mark.parametrize(
    ("m", "k", "n", "threads"),
    [(5, 3, 4, 1), (67, 700, 45, 1), (67, 700, 45, 2), (1, 513, 9, 2), (130, 40, 1, 2)],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tail_kernel_against_the_interpreter(m, k, n, threads, dtype):
    """The tail's C (fused.tail_stage + EpilogueStep.store) on the small path (5x3x4) and the
    blocked one: K over several K blocks, edge tiles in both dims, one row, one column, one
    and two threads; every stored result against the interpreter of the unfused graph."""
    from lucid.ir.interpret import interpret
    from lucid.ir.passes import PassManager
    from lucid.runtime.backends import BackendOptions, get_backend

    graph = _tail_graph(False, m, k, n, dtype)
    fused = PassManager(["fuse_epilogue"]).run(graph)[0]
    assert [n.op for n in fused.nodes] == ["fused_gemm"]
    rng = np.random.default_rng(m * k + n)
    args = [rng.standard_normal(v.type.shape).astype(dtype) for v in graph.inputs]
    want = interpret(graph, *args)
    compiled = get_backend("c").prepare(fused, BackendOptions())
    before = lucid.get_num_threads()
    lucid.set_num_threads(threads)
    try:
        got = compiled.run(*args)
    finally:
        lucid.set_num_threads(before)
    tol = F64 if dtype == np.float64 else {"rtol": 1e-4, "atol": 1e-4 * np.sqrt(k)}
    for out, ref in zip(got, want):
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, **tol)


def test_two_optimizers_a_free_parameter_and_a_tuple_result():
    """SGD with momentum on the first layer, AdamW on the second and on a temperature that no
    model holds; the step returns (loss, logits): all as eager, for several steps."""
    batches = data(np.float64, 3)

    def run(compiled: bool) -> tuple[Any, ...]:
        model = mlp()
        temperature = nn.Parameter(np.array([1.5]))
        first = lucid.optim.SGD(model[0].parameters(), lr=0.1, momentum=0.9)
        second = lucid.optim.AdamW([*model[2].parameters(), temperature], lr=0.01)

        def step(x, y):
            first.zero_grad()
            second.zero_grad()
            logits = model(x) * temperature
            loss = F.cross_entropy(logits, y)
            loss.backward()
            first.step()
            second.step()
            return loss, logits

        fn = lucid.compile(step) if compiled else step
        outs = [fn(lucid.Tensor(x), lucid.Tensor(y)) for x, y in batches]
        assert all(isinstance(o, tuple) and len(o) == 2 for o in outs)
        return (
            [o[1].data for o in outs],
            model.state_dict(),
            temperature.data.copy(),
            first.state_dict(),
            second.state_dict(),
        )

    results = [run(False), run(True)]
    (l0, s0, t0, f0, a0), (l1, s1, t1, f1, a1) = results
    for a, b in zip(l1, l0):
        np.testing.assert_allclose(a, b, **F64)
    np.testing.assert_allclose(t1, t0, **F64)
    assert not np.array_equal(t1, [1.5])  # the free parameter was stepped
    for k in s0:
        np.testing.assert_allclose(s1[k], s0[k], err_msg=k, **F64)
    for e, c in ((f0, f1), (a0, a1)):
        for i, st in e["state"].items():
            for k, v in st.items():
                np.testing.assert_allclose(c["state"][i][k], v, **F64)


def test_untraceable_step_falls_back_to_eager_when_asked():
    model = mlp()
    opt = lucid.optim.SGD(model.parameters(), lr=0.1)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        if loss.item() > 100:  # a Python decision on a value: not traceable
            return loss
        loss.backward()
        opt.step()
        return loss

    ((x, y),) = data(np.float64, 1)
    before = model[0].weight.data.copy()
    with pytest.warns(lucid.errors.FallbackWarning, match="runs eagerly"):
        lucid.compile(step, backend="interpreter", fallback="eager")(x, y)
    assert not np.array_equal(model[0].weight.data, before)  # the eager step ran
    with pytest.raises(TraceError, match=r"item\(\)"):
        lucid.compile(step, backend="interpreter")(x, y)
