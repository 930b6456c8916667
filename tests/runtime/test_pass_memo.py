"""The pass memo (lucid/runtime/_memo.py): a graph traced again finds its optimized graph(s) on
disk and runs no pass and no autodiff; what it serves is what the passes give; a changed graph,
a damaged or foreign memo file, a debug build or another backend never get a stale graph."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.ir.core import Graph
from lucid.ir.printer import format as format_graph
from lucid.runtime import _memo
from lucid.runtime import compiled as compiled_module
from lucid.runtime.cache import cache_clear, cache_root
from tests.models import SeedModel

pytestmark = pytest.mark.needs_cc


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache dir of this test's own, so the first compile in it is a memo miss."""
    monkeypatch.setenv("LUCID_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first stage name of every pipeline run lucid.compile makes (traced, autodiff)."""
    runs: list[str] = []
    real = compiled_module.optimize

    def spy(graph, names, first="traced"):
        runs.append(first)
        return real(graph, names, first)

    monkeypatch.setattr(compiled_module, "optimize", spy)
    return runs


def memo_files(cache: Path) -> list[Path]:
    return sorted((cache / "index").glob(f"{_memo.PREFIX}*{_memo.SUFFIX}"))


def seed_pair() -> tuple[SeedModel, SeedModel]:
    lucid.random.seed(3)
    a = SeedModel()
    b = SeedModel()
    b.load_state_dict(a.state_dict())
    return a, b


X = np.linspace(-3, 3, 15, dtype=np.float32).reshape(5, 3)


def test_a_second_compile_runs_no_pass_and_agrees(cache: Path, passes: list[str]) -> None:
    a, b = seed_pair()
    with lucid.no_grad():
        first = lucid.compile(a)(X)
    assert passes == ["traced"] and len(memo_files(cache)) == 1
    again = lucid.compile(b)
    with lucid.no_grad():
        second = again(X)
    assert passes == ["traced"]  # served by the memo
    np.testing.assert_array_equal(first.data, second.data)
    np.testing.assert_allclose(second.data, a(lucid.Tensor(X)).data, rtol=1e-6, atol=1e-6)


def test_stages_after_a_hit_are_those_of_a_full_run(cache: Path, passes: list[str]) -> None:
    a, b = seed_pair()
    full, served = lucid.compile(a), lucid.compile(b)
    with lucid.no_grad():
        full(X)
        served(X)
    assert passes == ["traced"]
    want = {k: format_graph(g) for k, g in full.stages().items()}
    got = {k: format_graph(g) for k, g in served.stages().items()}  # passes run now, on demand
    assert list(got) == list(want) and got == want
    assert passes == ["traced", "traced"]
    assert served.stages()["optimized"] is served.graph()  # still the graph that runs


def test_a_grad_entry_is_served_with_its_backward(cache: Path, passes: list[str]) -> None:
    a, b = seed_pair()
    grads, compiled = [], []
    for model in (a, b):
        cm = lucid.compile(model)
        cm(lucid.Tensor(X)).sum().backward()
        grads.append([p.grad.copy() for p in model.parameters()])
        compiled.append(cm)
    assert passes == ["autodiff", "autodiff"]  # forward and backward, once
    for g1, g2 in zip(*grads, strict=True):
        np.testing.assert_array_equal(g1, g2)
    cm = lucid.compile(b)
    cm(lucid.Tensor(X)).sum().backward()
    assert passes == ["autodiff", "autodiff"]
    names = list(cm.stages(which="backward"))
    assert names[0] == "autodiff" and names[-1] == "optimized" and len(names) > 2
    # the memo holds no autodiff graph: `stages()` runs autodiff and the passes again, and
    # gets every stage of the full run; the graphs that run stay the memo's
    full, served = compiled
    for which in ("forward", "backward"):
        want = {k: format_graph(g) for k, g in full.stages(which=which).items()}
        got = {k: format_graph(g) for k, g in served.stages(which=which).items()}
        assert list(got) == list(want) and got == want
    assert served.stages(which="backward")["optimized"] is served.entry().grad.graph


@pytest.mark.filterwarnings("ignore::lucid.errors.RecompileWarning")  # train, then eval
def test_a_memo_hit_finds_its_build_without_printing_the_graph(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-start index keys a memo's graphs by the memo key and their role: a compile
    served by the memo does not print them for the index (a MobileNetV3 training pair: ~60 ms
    of a warm start) and is still served the C built before, with no codegen."""
    from lucid.runtime import backends

    a, b = seed_pair()
    first = lucid.compile(a)
    first(lucid.Tensor(X)).sum().backward()
    with lucid.no_grad():
        want = first(X).data

    def refuse(graph, *args, **kwargs):
        raise AssertionError("the graph was printed for the warm-start index")

    monkeypatch.setattr(backends, "format_graph", refuse)
    served = lucid.compile(b)
    served(lucid.Tensor(X)).sum().backward()
    grad = served.entry()  # forward and backward of the training signature
    assert grad.grad is not None
    with lucid.no_grad():
        got = served(X).data
    infos = [served.build_info, grad.forward.build_info, grad.grad.executable.build_info]
    assert all(i.from_cache and i.codegen_seconds == 0.0 for i in infos), infos
    np.testing.assert_array_equal(got, want)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p.grad, q.grad)


class Scaled(nn.Module):
    """y = x * c + 1: the constant's value is only in the traced graph's attrs."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = np.full((3,), c, dtype=np.float32)

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        return x * lucid.Tensor(self.c) + 1.0


def test_graphs_that_differ_only_in_a_constant_do_not_share(cache: Path) -> None:
    for c in (2.0, -0.5, 2.0):
        with lucid.no_grad():
            y = lucid.compile(Scaled(c))(X)
        np.testing.assert_allclose(y.data, X * c + 1.0, rtol=1e-6)
    assert len(memo_files(cache)) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign", "empty"])
def test_a_damaged_memo_is_a_miss_and_rewritten(
    cache: Path, passes: list[str], damage: str
) -> None:
    a, b = seed_pair()
    with lucid.no_grad():
        want = lucid.compile(a)(X).data
    (path,) = memo_files(cache)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 0x40]) + data[-4:])
    elif damage == "foreign":  # a well-formed memo of the wrong kind under this key
        key = path.name.removeprefix(_memo.PREFIX).removesuffix(_memo.SUFFIX)
        _memo.store(cache_root(), key, ("not", "a", "graph"))
    else:
        path.write_bytes(b"")
    with lucid.no_grad():
        got = lucid.compile(b)(X).data
    np.testing.assert_array_equal(got, want)
    assert passes == ["traced", "traced"]  # recomputed
    key = path.name.removeprefix(_memo.PREFIX).removesuffix(_memo.SUFFIX)
    assert isinstance(_memo.load(cache_root(), key, object), Graph)  # and written again


def test_debug_builds_and_the_interpreter_run_every_pass(
    cache: Path, passes: list[str], tmp_path: Path
) -> None:
    a, b = seed_pair()
    with lucid.no_grad():
        lucid.compile(a)(X)
        lucid.compile(b, options={"debug_dir": str(tmp_path / "dbg")})(X)
        lucid.compile(b, backend="interpreter")(X)
    assert passes == ["traced"] * 3
    assert len(list((tmp_path / "dbg").rglob("*.lir"))) > 2  # every stage dumped


def test_cache_clear_removes_the_memo(cache: Path) -> None:
    with lucid.no_grad():
        lucid.compile(seed_pair()[0])(X)
    assert memo_files(cache)
    cache_clear()
    assert not memo_files(cache)


def test_an_unwritable_memo_costs_only_the_passes(
    cache: Path, passes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = seed_pair()
    blocked = cache.parent / "not-a-directory"
    blocked.write_text("")  # the memo's directory cannot be made or written: ENOTDIR
    monkeypatch.setattr(_memo, "_path", lambda root, key: blocked / f"{key}{_memo.SUFFIX}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a log line, not a warning
        with lucid.no_grad():
            y1 = lucid.compile(a)(X)
            y2 = lucid.compile(b)(X)
    np.testing.assert_array_equal(y1.data, y2.data)
    assert passes == ["traced", "traced"]


def _graph(scale: float, line: int, function: str = "forward", hint: str = "x") -> Graph:
    from lucid.errors import SourceLoc
    from lucid.ir.core import Builder
    from lucid.ir.types import DType, TensorType

    b = Builder("forward")
    x = b.input(TensorType(DType.F32, (2, 3)), hint)
    c = b.constant(scale, DType.F32, loc=SourceLoc("model.py", line, function))
    b.output(b.op("mul", (x, c), loc=SourceLoc("model.py", line, function)))
    return b.build()


def test_the_key_sees_attrs_locations_and_names_but_nothing_else() -> None:
    key = _memo.memo_key(_graph(0.5, 3), ["cse"], None)
    assert key == _memo.memo_key(_graph(0.5, 3), ["cse"], None)  # a fresh trace: the same key
    changed = [
        _memo.memo_key(_graph(0.5 + 2**-20, 3), ["cse"], None),  # a constant's last bits
        _memo.memo_key(_graph(0.5, 4), ["cse"], None),  # the source line errors would name
        _memo.memo_key(_graph(0.5, 3, "step"), ["cse"], None),  # its function
        _memo.memo_key(_graph(0.5, 3, hint="y"), ["cse"], None),  # an input's name
        _memo.memo_key(_graph(0.5, 3), ["cse", "dce"], None),  # the pipeline
        _memo.memo_key(_graph(0.5, 3), ["cse"], (True,)),  # a grad entry
    ]
    assert len({key, *changed}) == 1 + len(changed)


def test_a_memo_keeps_shared_values_shared_and_graphs_exact(cache: Path) -> None:
    """Values, Nodes and types are pickled as their fields (_memo._Pickler): what loads is the
    same graph, and a value both graphs of a payload hold is one object in both."""
    from lucid.ir.verify import verify

    graph = _graph(2.5, 7)
    _memo.store(cache_root(), "a" * 64, (graph, graph, graph.inputs[0]))
    first, second, x = _memo.load(cache_root(), "a" * 64, tuple)
    assert first is second and x is first.inputs[0]
    assert _memo.structure(first) == _memo.structure(graph)
    verify(first)  # every input of a node is the very object an earlier node or input defined
    assert first.nodes[1].inputs[0] is first.inputs[0]
    assert first.nodes[1].attrs == graph.nodes[1].attrs


def code_files(cache: Path) -> list[Path]:
    return sorted((cache / "index").glob(f"{_memo.CODE_PREFIX}*{_memo.CODE_SUFFIX}"))


SOURCE = "def f(x):\n    return x * 3 + 1\n"


def run_code(code) -> int:
    ns: dict = {}
    exec(code, ns)  # noqa: S102 - the test's own source
    return ns["f"](2)


@pytest.mark.parametrize("damage", ["none", "flip", "not code", "empty"])
def test_generated_code_is_kept_and_a_damaged_file_recompiled(cache: Path, damage: str) -> None:
    import marshal

    code = _memo.compiled_code(cache_root(), SOURCE, "<lucid test>")
    (path,) = code_files(cache)
    data = path.read_bytes()
    if damage == "flip":
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 0x10]) + data[-2:])
    elif damage == "not code":  # intact, but not a code object of that name
        payload = marshal.dumps(compile("y = 1", "<other>", "exec"))
        path.write_bytes(hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    elif damage == "empty":
        path.write_bytes(b"")
    again = _memo.compiled_code(cache_root(), SOURCE, "<lucid test>")
    assert run_code(code) == run_code(again) == 7
    assert again.co_filename == "<lucid test>"
    digest, _, payload = path.read_bytes().partition(b"\n")  # a damaged file is written again
    assert digest == hashlib.sha256(payload).hexdigest().encode()
    assert marshal.loads(payload).co_filename == "<lucid test>"
    other = _memo.compiled_code(cache_root(), SOURCE, "<another name>")
    assert other.co_filename == "<another name>" and len(code_files(cache)) == 2
    assert run_code(_memo.compiled_code(None, SOURCE, "<lucid test>")) == 7
    assert len(code_files(cache)) == 2  # None: nothing kept


def test_a_compiled_modules_fast_path_code_is_kept_and_cleared(cache: Path) -> None:
    a, b = seed_pair()
    with lucid.no_grad():
        want = lucid.compile(a)(X).data
        assert len(code_files(cache)) == 1
        np.testing.assert_array_equal(lucid.compile(b)(X).data, want)  # from the file
    assert len(code_files(cache)) == 1
    cache_clear()
    assert not code_files(cache)
