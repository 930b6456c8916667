"""The error family and the shared diagnostic format."""

from __future__ import annotations

import pytest

from lucid import errors as E
from lucid.ir import Builder
from lucid.ir.printer import diagnose
from tests.ir.graphs import f32
from tests.models import seed_graph


def test_hierarchy() -> None:
    for cls in (
        E.IRError,
        E.TraceError,
        E.AutodiffError,
        E.CompileError,
        E.BuildError,
        E.InputError,
    ):
        assert issubclass(cls, E.LucidError)
    assert issubclass(E.IRTypeError, TypeError) and issubclass(E.IRTypeError, E.IRError)
    assert issubclass(E.InputError, ValueError)
    assert issubclass(E.CompilerNotFoundError, E.BuildError)
    assert issubclass(E.VerifyError, E.IRError) and issubclass(E.ParseError, E.IRError)


def test_source_loc() -> None:
    loc = E.SourceLoc("model.py", 12, "forward")
    assert str(loc) == "model.py:12" and loc == E.SourceLoc("model.py", 12, "forward")
    with pytest.raises(AttributeError):
        loc.line = 3  # type: ignore[misc]


def test_format_diagnostic_clips_context() -> None:
    lines = [f"line {i}" for i in range(6)]
    text = E.format_diagnostic("bad", E.SourceLoc("a.py", 3), lines, 0, context=1)
    assert text.splitlines() == ["a.py:3: error: bad", "  > line 0", "    line 1"]
    assert E.format_diagnostic("bad") == "error: bad"


def test_diagnose_a_node_for_other_layers() -> None:
    g = seed_graph()
    node = g.nodes[1]
    text = diagnose("no VJP rule for op hardswish", g, node, loc=E.SourceLoc("m.py", 5))
    assert text.splitlines() == [
        "m.py:5: error: no VJP rule for op hardswish",
        "    " + str(g).splitlines()[0],
        "    %0 = linear %x, %fc1.weight, %fc1.bias : f32[N,5]",
        "  > %1 = hardswish %0 : f32[N,5]",
        "    %2 = linear %1, %fc2.weight, %fc2.bias : f32[N,2]",
        "    return %2",
    ]
    b = Builder()
    b.op("relu", [b.input(f32(2))], loc=E.SourceLoc("z.py", 9))
    assert diagnose("x", b.build(), b.nodes[0]).startswith("z.py:9: error: x\n")
