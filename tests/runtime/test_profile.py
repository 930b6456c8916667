"""options={"profile": True}: every kernel call of the compiled programs counted and timed, named
with the IR it implements (lucid/runtime/profile.py), without changing what the program computes."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.errors import LucidError
from lucid.ir.printer import format as format_graph
from tests.models import hardswish_mlp, normal_rows

pytestmark = pytest.mark.needs_cc


def mlp() -> nn.Module:
    return hardswish_mlp((12, 40, 5), seed=3)


def x_of(rows: int = 9) -> np.ndarray:
    return normal_rows(rows, 12, seed=0)


def call_sites(source: str | None) -> int:
    """How many kernel calls the program's C times."""
    assert source is not None
    return len(re.findall(r"lucid_prof_add\(\d+, &t0\);", source))


def test_a_profiled_build_computes_the_same_bits_and_counts_every_kernel_call() -> None:
    model, x = mlp().eval(), x_of()
    plain = lucid.compile(model)
    timed = lucid.compile(model, options={"profile": True})
    with lucid.no_grad():
        start = time.perf_counter()
        for _ in range(7):
            got = timed(x)
        wall = time.perf_counter() - start
        np.testing.assert_array_equal(got.data, plain(x).data)
    profile = timed.profile()
    assert len(profile.rows) == call_sites(timed.c_source) > 0
    assert "lucid_prof_add(" not in (plain.c_source or "")
    for row in profile.rows:
        assert row.graph == "forward" and row.calls == 7 and row.seconds > 0, row
    assert profile.seconds <= wall  # the kernels' times are parts of the calls'
    # each row names its kernel and the IR line it implements
    assert any(r.kernel.startswith("k0_") and "linear" in r.kernel for r in profile.rows)


def test_reset_zeroes_the_counts_and_a_reading_does_not() -> None:
    timed = lucid.compile(mlp().eval(), options={"profile": True})
    with lucid.no_grad():
        timed(x_of())
        timed(x_of())
    assert {r.calls for r in timed.profile()} == {2}
    assert {r.calls for r in timed.profile(reset=True)} == {2}  # read, then zeroed
    assert {r.calls for r in timed.profile()} == {0}
    with lucid.no_grad():
        timed(x_of())
    assert {r.calls for r in timed.profile()} == {1}


def test_a_grad_signature_times_its_backward_too() -> None:
    model = mlp()
    timed = lucid.compile(model, options={"profile": True})
    for _ in range(3):
        timed(x_of()).sum().backward()
    rows = timed.profile().rows
    forward = [r for r in rows if r.graph == "forward"]
    backward = [r for r in rows if r.graph == "backward"]
    assert forward and backward
    assert {r.calls for r in rows} == {3}
    assert len(backward) == call_sites(timed.backward_source)


def test_a_whole_step_program_is_profiled() -> None:
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)

    def step(x: lucid.Tensor) -> lucid.Tensor:
        opt.zero_grad()
        loss = model(x).sum()
        loss.backward()
        opt.step()
        return loss

    compiled = lucid.compile(step, options={"profile": True})
    for _ in range(4):
        compiled(lucid.Tensor(x_of()))
    profile = compiled.profile()
    assert len(profile.rows) == call_sites(compiled.c_source)
    assert {(r.graph, r.calls) for r in profile.rows} == {("step", 4)}


def test_the_table_ranks_kernels_by_time_and_totals_them() -> None:
    timed = lucid.compile(mlp().eval(), options={"profile": True, "fusion": False})
    with lucid.no_grad():
        for _ in range(5):
            timed(x_of(300))
    profile = timed.profile()
    top = profile.top()
    assert [r.seconds for r in top] == sorted((r.seconds for r in profile.rows), reverse=True)
    text = str(profile)
    lines = text.splitlines()
    assert lines[0].split() == ["share", "total", "calls", "per", "call", "graph", "kernel:", "IR"]
    assert len(top) == 3 and top[0].kernel in lines[1] and lines[-1].startswith("total ")
    assert len(profile.table(1).splitlines()) == 4  # header, one row, "... more", total


def test_hostile_parameter_names_reach_the_label_intact_through_a_c_string() -> None:
    name = 'w"*/\\n\t\u00e9?'  # a quote, a comment end, a backslash, a tab, non-ASCII
    lucid.random.seed(1)
    model = nn.ModuleDict({name: nn.Linear(3, 2)})

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x: lucid.Tensor) -> lucid.Tensor:
            return self.inner[name](x)

    timed = lucid.compile(Wrap().eval(), options={"profile": True})
    with lucid.no_grad():
        timed(np.ones((2, 3), np.float32))
    (row,) = timed.profile().rows
    # the IR line as the printer writes it (which quotes the name), byte for byte
    (line,) = [ln.strip() for ln in format_graph(timed.graph()).splitlines() if "linear" in ln]
    assert row.kernel == f"k0_linear: {line}" and "\u00e9" in line


def test_profile_without_the_option_or_without_c_is_an_error() -> None:
    plain = lucid.compile(mlp().eval())
    with lucid.no_grad():
        plain(x_of())
    with pytest.raises(LucidError, match=r"options=\{'profile': True\}"):
        plain.profile()
    interpreted = lucid.compile(mlp().eval(), backend="interpreter", options={"profile": True})
    with lucid.no_grad():
        interpreted(x_of())
    with pytest.raises(LucidError, match="backend runs no C kernels"):
        interpreted.profile()
    with pytest.raises(TypeError, match="'profile' must be True or False, not 'yes'"):
        lucid.compile(mlp(), options={"profile": "yes"})


def test_models_sharing_one_loaded_program_count_its_runs_since_each_started() -> None:
    first = lucid.compile(mlp().eval(), options={"profile": True})
    second = lucid.compile(mlp().eval(), options={"profile": True})
    with lucid.no_grad():
        for _ in range(3):
            first(x_of())
        for _ in range(2):
            second(x_of())  # compiled (loaded) here: it counts from now on
    # equal graphs: one cache entry, one loaded library, one set of C counters
    assert first.build_info is not None and second.build_info is not None
    assert first.build_info.path == second.build_info.path
    assert {r.calls for r in first.profile()} == {5}  # its 3, and the 2 since
    assert {r.calls for r in second.profile(reset=True)} == {2}
    assert {r.calls for r in second.profile()} == {0}  # a reset is the model's own
    assert {r.calls for r in first.profile()} == {5}
