"""The tracer: models to golden IR, interpreter == eager, one TraceError listing every problem."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.errors import TraceError
from lucid.ir import Graph, format_graph, interpret, parse, trace, verify
from lucid.ir.trace import user_location
from tests.models import SeedModel, seed_model

HERE = Path(__file__).resolve()
GOLDEN = HERE.parent.parent / "golden"


def line_of(marker: str) -> int:
    """The line of this file holding `marker` in a comment (so tests survive edits)."""
    for i, text in enumerate(HERE.read_text().splitlines(), 1):
        if text.rstrip().endswith(f"# {marker}"):
            return i
    raise AssertionError(f"marker {marker} not found")


# ---------------------------------------------------------------- models


class Block(nn.Module):
    """Linear then an activation chosen at construction (Python control flow at trace time)."""

    def __init__(self, n_in: int, n_out: int, act: str) -> None:
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)
        self.act = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "tanh": nn.Tanh()}[act]

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.act(self.lin(x))


class Nested(nn.Module):
    """Blocks inside blocks; a loop over them runs at trace time."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(Block(4, 8, "relu"), Block(8, 8, "relu6"))
        self.head = Block(8, 3, "tanh")

    def forward(self, x):  # type: ignore[no-untyped-def]
        for block in self.encoder:  # a Python loop: unrolled at trace time
            x = block(x)
        return self.head(x)


class Scalars(nn.Module):
    """Python numbers mixed into ops become constants; a Python branch on a shape is static."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.scale = 0.5

    def forward(self, x):  # type: ignore[no-untyped-def]
        y = self.fc(x) * self.scale + 1.0
        if x.shape[-1] == 3:  # a shape is a Python int at trace time: fine
            y = y**2
        return (y - 2.0).clip(-1.0, None), y.mean(axis=1)


class WithMSE(nn.Module):
    """A loss inside the model: forward(x, target) -> scalar."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2))
        self.loss = nn.MSELoss()

    def forward(self, x, target):  # type: ignore[no-untyped-def]
        return self.loss(self.net(x), target)


class WithCE(nn.Module):
    """Cross-entropy of logits against int64 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.loss = nn.CrossEntropyLoss(reduction="sum")

    def forward(self, x, target):  # type: ignore[no-untyped-def]
        return self.loss(self.fc(x), target)


def seeded(make: Callable[[], nn.Module]) -> nn.Module:
    lucid.random.seed(0)
    return make()


def rand(*shape: int) -> lucid.Tensor:
    return lucid.tensor(np.random.default_rng(1).standard_normal(shape).astype(np.float32) * 3)


X = lucid.tensor([[0.5, -1.2, 3.3]])
TARGET = lucid.tensor(np.array([1, 3, 0, 2], np.int64))

# (golden name, model factory, example inputs, dynamic_batch)
CASES: list[tuple[str, Callable[[], nn.Module], tuple[Any, ...], bool]] = [
    ("trace_seed.lir", SeedModel, (X,), False),
    ("trace_seed_dynamic.lir", SeedModel, (rand(4, 3),), True),
    (
        "trace_sequential_activations.lir",
        lambda: nn.Sequential(
            nn.Linear(3, 6),
            nn.ReLU(),
            nn.Linear(6, 6),
            nn.ReLU6(),
            nn.Linear(6, 6),
            nn.Sigmoid(),
            nn.Linear(6, 6),
            nn.Tanh(),
            nn.Linear(6, 2),
            nn.HardSigmoid(),
        ),
        (rand(4, 3),),
        True,
    ),
    ("trace_nested.lir", Nested, (rand(5, 4),), True),
    (
        "trace_flatten.lir",
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(6, 2), nn.HardSwish()),
        (rand(4, 2, 3),),
        True,
    ),
    ("trace_scalars.lir", Scalars, (rand(4, 3),), False),
    ("trace_mse_loss.lir", WithMSE, (rand(4, 3), rand(4, 2)), True),
    ("trace_cross_entropy.lir", WithCE, (rand(4, 3), TARGET), True),
]


def traced(
    case: tuple[str, Callable[[], nn.Module], tuple[Any, ...], bool],
) -> tuple[nn.Module, Graph]:
    _, make, inputs, dynamic = case
    model = seeded(make)
    return model, trace(model, *inputs, dynamic_batch=dynamic)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_trace_matches_golden(case, golden) -> None:  # type: ignore[no-untyped-def]
    _, graph = traced(case)
    verify(graph)
    golden(case[0], format_graph(graph))


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("trace_*.lir")))
def test_golden_round_trips_through_the_parser(name: str) -> None:
    text = (GOLDEN / name).read_text()
    assert format_graph(parse(text)) == text


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_interpreter_on_the_trace_equals_eager(case) -> None:  # type: ignore[no-untyped-def]
    model, graph = traced(case)
    inputs = case[2]
    with lucid.no_grad():
        eager = model(*inputs)
    eager = eager if isinstance(eager, tuple) else (eager,)
    params = {name: p.data for name, p in model.named_parameters()}
    got = interpret(graph, *(t.data for t in inputs), params=params)
    assert len(got) == len(eager)
    for g, e in zip(got, eager):
        assert g.dtype == e.data.dtype and g.shape == e.data.shape
        if graph.nodes and all(
            n.op not in ("linear", "matmul", "sum", "mean", "mse_loss", "cross_entropy")
            for n in graph.nodes
        ):
            np.testing.assert_array_equal(g, e.data)
        else:
            np.testing.assert_allclose(g, e.data, rtol=1e-6, atol=1e-6)


def test_dynamic_batch_graph_runs_on_other_batch_sizes() -> None:
    model, graph = traced(CASES[1])
    assert graph.inputs[0].type.shape == ("N", 3)
    params = {name: p.data for name, p in model.named_parameters()}
    for n in (1, 7):
        x = np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)
        (y,) = interpret(graph, x, params=params)
        with lucid.no_grad():
            np.testing.assert_allclose(y, model(lucid.tensor(x)).data, rtol=1e-6, atol=1e-6)


@pytest.mark.filterwarnings("ignore:invalid value")
def test_elementwise_trace_is_exact_against_eager_including_kinks() -> None:
    model = nn.Sequential(nn.HardSwish(), nn.ReLU6(), nn.HardSigmoid())
    x = lucid.tensor(np.array([[-np.inf, -3.0, -0.0, 0.0, 3.0, 6.0, np.nan, np.inf]], np.float32))
    graph = trace(model, x)
    (y,) = interpret(graph, x.data)
    np.testing.assert_array_equal(y, model(x).data)


def test_params_are_named_by_module_path_and_shared_params_appear_once() -> None:
    model = seeded(Nested)
    graph = trace(model, rand(2, 4))
    assert [p.hint for p in graph.params] == [
        "encoder.0.lin.weight",
        "encoder.0.lin.bias",
        "encoder.1.lin.weight",
        "encoder.1.lin.bias",
        "head.lin.weight",
        "head.lin.bias",
    ]
    shared = nn.Linear(3, 3)
    twice = nn.Sequential(shared, nn.ReLU(), shared)
    graph = trace(twice, rand(2, 3))
    assert [p.hint for p in graph.params] == ["0.weight", "0.bias"]
    assert graph.nodes[0].inputs[1] is graph.nodes[2].inputs[1]


def test_every_node_records_the_users_source_line() -> None:
    graph = trace(seed_model(), X)
    fc1 = graph.nodes[0]
    assert fc1.loc is not None
    lines, first = inspect.getsourcelines(SeedModel.forward)
    fc1_line = first + next(i for i, text in enumerate(lines) if "self.fc1(" in text)
    assert Path(fc1.loc.file).resolve() == Path(inspect.getfile(SeedModel)).resolve()
    assert fc1.loc.line == fc1_line
    assert fc1.loc.function == "forward"
    # layers defined inside lucid (Sequential's loop) point at the caller's line
    seq = trace(nn.Sequential(nn.ReLU()), X)  # LOC-seq
    assert seq.nodes[0].loc is not None and seq.nodes[0].loc.line == line_of("LOC-seq")
    assert user_location() is not None


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.inner = nn.Sequential(nn.ReLU(), Indexing())

    def forward(self, x):  # type: ignore[no-untyped-def]
        y = self.fc(x)
        if y.sum() > 0:  # LOC-bool
            y = y * 2.0
        scale = float(y.mean())  # LOC-float
        return self.inner(y) * scale


class Indexing(nn.Module):
    def forward(self, x):  # type: ignore[no-untyped-def]
        # advanced indexing (a list) stays eager-only; basic indexing traces
        return x[[0]]  # LOC-index


def test_trace_error_lists_every_problem_with_module_path_and_line() -> None:
    with pytest.raises(TraceError) as info:
        trace(seeded(DataDependent), X)
    text = str(info.value)
    assert "3 unsupported operation(s)" in text
    lines = text.splitlines()[1:]
    assert f"{HERE}:{line_of('LOC-bool')}: in DataDependent: bool(Tensor)" in lines[0]
    assert f"{HERE}:{line_of('LOC-float')}: in DataDependent: float(Tensor)" in lines[1]
    assert f"{HERE}:{line_of('LOC-index')}: in inner.1: Tensor.__getitem__" in lines[2]


def test_trace_error_lists_problems_found_before_eager_code_failed() -> None:
    class ItemOfMatrix(nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            if (x > 0).sum() > 1:
                pass
            return x * x.item()  # item() of a [1, 3] tensor also fails eagerly

    with pytest.raises(TraceError) as info:
        trace(ItemOfMatrix(), X)
    text = str(info.value)
    assert "bool(Tensor)" in text and "Tensor.item()" in text
    assert "tracing stopped: ValueError" in text


def test_errors_without_unsupported_ops_propagate_unchanged() -> None:
    class Bad(nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            raise KeyError("user bug")

    with pytest.raises(KeyError, match="user bug"):
        trace(Bad(), X)


def test_shape_dependent_constants_fail_with_dynamic_batch() -> None:
    class Reshape(nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            return x.reshape(x.shape[0] // 2, 6)  # N // 2: no dim of compiled code

    graph = trace(Reshape(), rand(4, 3))  # static: fine
    assert graph.nodes[0].attrs["shape"] == (2, 6)
    with pytest.raises(TraceError, match="in Reshape: reshape .*N // 2 computed from the batch"):
        trace(Reshape(), rand(4, 3), dynamic_batch=True)


def test_the_batch_times_a_constant_is_a_dim_of_a_shape() -> None:
    """`x.reshape(n * 3)` with n = x.shape[0] records the dim N*3, and the shape of the result
    reads back as the SymInt N * 3 (so `reshape(n, 3)` returns to f32[N,3])."""

    class Flat(nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            n = x.shape[0]
            flat = x.reshape(n * 3)
            assert repr(flat.shape[0]) == "N * 3=12"
            return flat.reshape(n, 3), flat

    graph = trace(Flat(), rand(4, 3), dynamic_batch=True)
    assert graph.nodes[0].attrs["shape"] == ("N*3",)
    assert [str(t) for t in graph.output_types] == ["f32[N,3]", "f32[N*3]"]


def test_non_tensor_output_is_an_error() -> None:
    class ReturnsInt(nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            return x, 3

    with pytest.raises(TraceError, match="returned int as output 1"):
        trace(ReturnsInt(), X)


def test_tracing_leaves_the_model_usable_eagerly_with_autograd() -> None:
    model = seed_model()
    trace(model, X)
    x = lucid.tensor([[0.5, -1.2, 3.3]], requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None


class Temporaries(nn.Module):
    """Forward drops each intermediate as soon as the next exists, and notes (by weak reference)
    whether the first one is still alive at the end: the tracer must not be what keeps it."""

    def forward(self, x):  # type: ignore[no-untyped-def]
        h = x * 2.0
        first = weakref.ref(h)
        for i in range(40):  # many short-lived tensors and constants: their ids are reused
            h = h + lucid.tensor(np.float32(i)) * (x - float(i))
        self.first_alive = first() is not None
        return h


def test_the_trace_frees_intermediates_and_reused_ids_stay_distinct() -> None:
    # a full-batch trace that kept every intermediate held all of MobileNetV3-Small's
    # activations at once (800 MiB at batch 32, where eager needs 230)
    model, x = Temporaries(), rand(3, 5)
    graph = trace(model, x)
    assert model.first_alive is False
    (y,) = interpret(graph, x.data)
    with lucid.no_grad():
        eager = model(x).data
    np.testing.assert_allclose(y, eager, rtol=1e-6)


def test_each_scalar_is_one_constant_however_often_it_is_used() -> None:
    """A Python number in an op is a new 0-d Tensor at every use (BatchNorm's eps in every
    layer): the trace makes one constant per (dtype, value), -0.0 and 0.0 apart, and the graph
    computes what eager does."""

    class Scalars(nn.Module):
        def forward(self, x: lucid.Tensor) -> lucid.Tensor:
            for _ in range(3):
                x = (x + 1e-5) * 2.0 + 1e-5
            return x * -0.0 + x * 0.0 + (x + 1e-5) / 2.0

    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    graph = trace(Scalars(), x)
    verify(graph)
    constants = [n.attrs["value"] for n in graph.nodes if n.op == "constant"]
    want = [float(np.float32(v)) for v in (1e-5, 2.0, -0.0, 0.0)]
    assert sorted(map(repr, constants)) == sorted(map(repr, want))
    (got,) = interpret(graph, x)
    np.testing.assert_array_equal(got, Scalars()(lucid.Tensor(x)).data)
