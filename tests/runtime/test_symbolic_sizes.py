"""Symbolic sizes and the guards on them (issue 14): a model that reads its batch size gets
the run-time batch size in compiled and exported code, at every batch size, never the traced one.

Each model here returned wrong numbers (or failed) under `dynamic_batch=True` before: the
traced batch size was baked into the graph as a constant while the graph was dynamic in N.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lucid
from lucid import _symbolic as sym
from lucid import nn
from lucid._symbolic import SymInt
from lucid.errors import RecompileWarning, TraceError
from lucid.ir import format as format_graph
from lucid.ir import interpret, parse
from lucid.ir.trace import trace
from tests.aot._helpers import QUICK

pytestmark = pytest.mark.needs_cc

BATCHES = (1, 3, 8)
THIS_FILE = re.escape(Path(__file__).name)


class MeanByHand(nn.Module):
    """x.sum() / x.shape[0]: the batch size as a number."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: Any) -> Any:
        return self.fc(x).sum() / x.shape[0]


class ZerosOfBatch(nn.Module):
    """lucid.zeros(x.shape[0], 4) and ones_like: tensors created at the batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: Any) -> Any:
        y = self.fc(x)
        return y + lucid.zeros(x.shape[0], 4) + 2 * lucid.ones_like(y)


class FlattenByHand(nn.Module):
    """x.reshape(x.shape[0], -1) of a 3-D input (failed outright under a dynamic batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, x: Any) -> Any:
        return self.fc(x.reshape(x.shape[0], -1))


class SizeArithmetic(nn.Module):
    """Arithmetic on sizes stays symbolic: (2N + 1) / numel and a broadcast to (N, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: Any) -> Any:
        y = self.fc(x)
        scale = (x.shape[0] * 2 + 1) / x.size
        return y.sum(axis=1).reshape(x.shape[0], 1).broadcast_to((x.shape[0], 4)) * scale


class Branchy(nn.Module):
    """A branch on the batch size: a guard, not a frozen decision."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: Any) -> Any:
        y = self.fc(x)
        if x.shape[0] > 4:
            return y * 2
        return y - 1


class Unrolled(nn.Module):
    """range(x.shape[0]) needs a plain int: the trace specializes to that batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: Any) -> Any:
        y = self.fc(x)
        total = y * 0
        for _ in range(x.shape[0]):
            total = total + y
        return total


NUMERIC = [MeanByHand, ZerosOfBatch, FlattenByHand, SizeArithmetic]


def _input(model: nn.Module, n: int, dtype: Any = np.float32) -> np.ndarray:
    rng = np.random.default_rng(n)
    shape = (n, 2, 3) if isinstance(model, FlattenByHand) else (n, 3)
    return rng.standard_normal(shape).astype(dtype)


def _eager(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with lucid.no_grad():
        return model(lucid.tensor(x)).data


def _close(got: Any, want: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("cls", NUMERIC)
def test_compiled_dynamic_batch_reads_the_run_time_batch(cls: type[nn.Module]) -> None:
    lucid.random.seed(0)
    model = cls()
    compiled = lucid.compile(model, dynamic_batch=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecompileWarning)  # one graph serves every batch size
        for n in (5, *BATCHES):
            x = _input(model, n)
            with lucid.no_grad():
                _close(compiled(x).data, _eager(model, x))
    assert len(compiled.signatures) == 1


@pytest.mark.parametrize("cls", NUMERIC)
def test_the_graph_shows_sizes_and_round_trips(cls: type[nn.Module]) -> None:
    lucid.random.seed(0)
    model = cls()
    with lucid.no_grad():
        graph = trace(model, _input(model, 5), dynamic_batch=True)
    text = format_graph(graph)
    assert format_graph(parse(text)) == text
    assert "[N," in text  # the batch stays symbolic throughout
    if cls in (MeanByHand, SizeArithmetic):
        assert "dim %x {axis=0" in text  # the size is read at run time, not a constant
    params = [p.data for p in model.parameters()]
    for n in BATCHES:  # the interpreter binds N from the input, as the C does
        x = _input(model, n)
        _close(interpret(graph, x, *params)[0], _eager(model, x))


@pytest.mark.slow
@pytest.mark.parametrize("cls", NUMERIC)
def test_exported_dynamic_batch_reads_the_run_time_batch(
    cls: type[nn.Module], tmp_path: Path
) -> None:
    from lucid.runtime.loader import load

    lucid.random.seed(0)
    model = cls()
    result = lucid.export(model, (_input(model, 5),), tmp_path / "m", flags=QUICK)
    lib = load(result.library)
    for n in BATCHES:
        x = _input(model, n)
        _close(lib(x), _eager(model, x))


def test_backward_through_a_size_matches_eager_in_float64() -> None:
    lucid.random.seed(1)
    model = SizeArithmetic()
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    compiled = lucid.compile(model, dynamic_batch=True)
    for n in BATCHES:
        x = _input(model, n, np.float64)
        grads = []
        for run in (compiled, model):
            model.zero_grad()
            xt = lucid.tensor(x, requires_grad=True)
            (run(xt) ** 2).sum().backward()
            grads.append([xt.grad, *(p.grad for p in model.parameters())])
        for got, want in zip(*grads):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_loss_on_the_input_alone_divides_by_the_run_time_batch() -> None:
    class Loss(nn.Module):
        def forward(self, x: Any) -> Any:
            return (x * 2).sum() / x.shape[0]

    compiled = lucid.compile(Loss(), dynamic_batch=True)
    for n in BATCHES:
        x = lucid.tensor(np.ones((n, 4)), requires_grad=True)
        loss = compiled(x)
        loss.backward()
        assert float(loss.data) == pytest.approx(8.0)
        np.testing.assert_allclose(x.grad, np.full((n, 4), 2.0 / n))


def test_a_branch_on_the_batch_recompiles_once_per_side_with_a_warning() -> None:
    lucid.random.seed(2)
    model = Branchy()
    compiled = lucid.compile(model, dynamic_batch=True)
    with lucid.no_grad():
        _close(compiled(_input(model, 8)).data, _eager(model, _input(model, 8)))
        with pytest.warns(RecompileWarning, match=rf"N > 4 \(decided at .*{THIS_FILE}:\d+\).*N=3"):
            _close(compiled(_input(model, 3)).data, _eager(model, _input(model, 3)))
        with warnings.catch_warnings():
            warnings.simplefilter("error", RecompileWarning)  # both entries are reused
            for n in (9, 2, 5, 4, 1, 6):
                x = _input(model, n)
                _close(compiled(x).data, _eager(model, x))
    assert [len(e.guards) for e in compiled._order] == [1, 1]
    assert [e.guards[0].condition() for e in compiled._order] == ["N > 4", "not (N > 4)"]


def test_a_python_int_from_the_batch_specializes_and_stays_correct() -> None:
    lucid.random.seed(3)
    model = Unrolled()
    compiled = lucid.compile(model, dynamic_batch=True)
    with lucid.no_grad():
        compiled(_input(model, 2))
        for n in (3, 2, 4):
            x = _input(model, n)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RecompileWarning)  # one entry per batch size
                _close(compiled(x).data, _eager(model, x))
    assert [str(e.guards[0].condition()) for e in compiled._order] == ["N == 2", "N == 3", "N == 4"]


def test_len_of_a_batch_specializes() -> None:
    class Len(nn.Module):
        def forward(self, x: Any) -> Any:
            return x * len(x)

    compiled = lucid.compile(Len(), dynamic_batch=True)
    with lucid.no_grad():
        np.testing.assert_allclose(compiled(np.ones((2, 3), np.float32)).data, 2.0)
        with pytest.warns(RecompileWarning, match="N == 2"):
            np.testing.assert_allclose(compiled(np.ones((5, 3), np.float32)).data, 5.0)


def test_a_bare_dynamic_trace_refuses_decisions_naming_the_line() -> None:
    with pytest.raises(TraceError, match=rf"{THIS_FILE}:\d+: the trace needs N > 4"):
        trace(Branchy(), np.ones((8, 3), np.float32), dynamic_batch=True)
    graph = trace(Branchy(), np.ones((8, 3), np.float32))  # static: the branch is just taken
    assert [n.op for n in graph.nodes] == ["linear", "constant", "mul"]


@pytest.mark.slow
def test_export_refuses_decisions_or_specializes_when_asked(tmp_path: Path) -> None:
    from lucid.errors import InputError, LucidWarning
    from lucid.runtime.loader import load

    lucid.random.seed(4)
    model = Branchy()
    x = _input(model, 8)
    with pytest.raises(TraceError, match=rf"(?s){THIS_FILE}:\d+: .*N > 4.*specialize=True"):
        lucid.export(model, (x,), tmp_path / "m", flags=QUICK)
    with pytest.warns(LucidWarning, match="example's batch size only"):
        result = lucid.export(model, (x,), tmp_path / "m", flags=QUICK, specialize=True)
    lib = load(result.library)
    _close(lib(x), _eager(model, x))
    with pytest.raises(InputError):
        lib(_input(model, 3))


def test_sizes_that_cannot_be_compiled_dynamically_are_errors_naming_the_line() -> None:
    class Doubled(nn.Module):  # N + 2 rows: no dim of compiled code (N * 3 would be one)
        def forward(self, x: Any) -> Any:
            return x.reshape(x.shape[0] + 2, 2)

    class FloorDiv(nn.Module):
        def forward(self, x: Any) -> Any:
            return x / (x.shape[0] // 2)

    class Noise(nn.Module):
        def forward(self, x: Any) -> Any:
            return x + lucid.randn(3)

    x = np.ones((4, 3), np.float32)
    for model, what in [
        (Doubled(), r"N \+ 2 computed from the batch"),
        (FloorDiv(), r"N // 2 is used as a number"),
        (Noise(), r"lucid.randn\(\) draws random numbers"),
    ]:
        with pytest.raises(TraceError, match=rf"(?s){THIS_FILE}:\d+.*{what}"):
            lucid.compile(model, dynamic_batch=True)(x)
    with lucid.no_grad():  # a static batch has plain int sizes: these two compile
        np.testing.assert_allclose(lucid.compile(Doubled())(x).data, np.ones((6, 2)))
        np.testing.assert_allclose(lucid.compile(FloorDiv())(x).data, 0.5)


def test_symint_arithmetic_text_and_evaluation() -> None:
    n = SymInt("N", 6)
    e = (n * 2 + 1) // 3 - n % 4
    assert e.hint == (6 * 2 + 1) // 3 - 6 % 4
    assert sym.text(e.expr) == "(N * 2 + 1) // 3 - N % 4"
    assert sym.evaluate(e.expr, {"N": 10}) == (10 * 2 + 1) // 3 - 10 % 4
    assert sym.python(e.expr, {"N": "n"}) == "((((n * 2) + 1) // 3) - (n % 4))"
    assert sym.text((2 - n).expr) == "2 - N" and (2 - n).hint == -4
    assert (n + 0) is not n and (n + 0).expr == "N" and (1 * n).expr == "N"
    assert sym.text((n / (n - 1)).expr) == "N / (N - 1)"
    assert repr((n, 3)) == "(N=6, 3)"
    # outside a trace no tracer collects guards: a SymInt behaves as its value
    assert n > 4 and n == 6 and int(n) == 6 and list(range(n)) == list(range(6))
    with pytest.raises(TypeError):
        sym.python(("import os", 1, 2), {})


def test_a_guard_that_divides_by_zero_fails_and_retraces_like_eager() -> None:
    class Ratio(nn.Module):
        def forward(self, x: Any) -> Any:
            if 12 // (x.shape[0] - 1) > 3:
                return x * 2
            return x

    model = Ratio()
    compiled = lucid.compile(model, dynamic_batch=True)
    with lucid.no_grad(), warnings.catch_warnings():
        np.testing.assert_array_equal(compiled(np.ones((2, 3), np.float32)).data, 2.0)
        warnings.simplefilter("ignore", RecompileWarning)
        with pytest.raises(ZeroDivisionError):  # what eager raises at N=1, from forward
            compiled(np.ones((1, 3), np.float32))
        with pytest.raises(ZeroDivisionError):
            model(lucid.tensor(np.ones((1, 3), np.float32)))
