"""options={"autotune": True}: tuned GEMM blockings, recorded once per problem and machine."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.codegen.emit_c import CodegenOptions, emit_c
from lucid.codegen.gemm import CacheSizes, GemmProblem, detect_isa
from lucid.ir.trace import trace
from lucid.runtime import autotune
from lucid.runtime.compiled import CompileOptions

# K=300 crosses kc=128/256 block edges, so several candidates differ at this small size
PROBLEM = GemmProblem("float", detect_isa(), False, True, (64,), 200, 300, CacheSizes())
F32_TOL = {"rtol": 1.3e-6, "atol": 1e-5}  # as test_compile.py


def tuner(cache: Path, out: io.StringIO | None = None) -> autotune.Autotuner:
    """A quick tuner: few candidates, two timing rounds, progress into `out`."""
    return autotune.Autotuner(cache_dir=cache, limit=4, rounds=2, progress=out or io.StringIO())


def forbid_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any timing fail: what runs afterwards must come from the records."""

    def fail(*args: object, **kwargs: object) -> list[float]:
        raise AssertionError("autotune timed a problem that has a record")

    monkeypatch.setattr(autotune, "measure", fail)


def count_timings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count calls of the timing function (which still runs)."""
    calls: list[int] = []
    real = autotune.measure

    def spy(*args: object, **kwargs: object) -> list[float]:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(autotune, "measure", spy)
    return calls


def records(cache: Path) -> list[Path]:
    return sorted((cache / autotune.AUTOTUNE_DIR).glob("*.json"))


def test_option_is_validated() -> None:
    assert CompileOptions.from_dict({}).autotune is False
    assert CompileOptions.from_dict({"autotune": True}).autotune is True
    with pytest.raises(TypeError, match="'autotune' must be True or False, not 'yes'"):
        lucid.compile(nn.Linear(2, 3), options={"autotune": "yes"})
    with pytest.raises(TypeError, match="autotune"):
        lucid.compile(nn.Linear(2, 3), options={"autotune": 1})


def test_candidates_start_with_the_cost_model() -> None:
    base = PROBLEM.default_blocking()
    from lucid.codegen.gemm import blocking_candidates

    found = blocking_candidates(base, "float")
    assert found[0] == base
    assert len(found) == len(set(found)) > 4
    for b in found:
        assert (b.mr, b.nr) == (base.mr, base.nr)
        assert b.mc % b.mr == 0 and b.nc % b.nr == 0 and b.kc % 8 == 0
        assert 128 <= b.kc <= 512


@pytest.mark.needs_cc
@pytest.mark.slow
def test_tuner_picks_a_candidate_and_reuses_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tuner(tmp_path).tune(PROBLEM)
    assert first.timed
    assert first.candidates[0] == PROBLEM.default_blocking()
    assert len(first.candidates) > 1 and len(first.seconds) == len(first.candidates)
    assert first.blocking in first.candidates
    (path,) = records(tmp_path)
    assert json.loads(path.read_text())["blocking"]["kc"] == first.blocking.kc

    forbid_timing(monkeypatch)
    again = tuner(tmp_path).tune(PROBLEM)
    assert not again.timed
    assert again.blocking == first.blocking


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        '{"key": {}, "blocking": {"mc": 1, "kc": 8, "nc": 1}}',
        "[1, 2]",
    ],
)
@pytest.mark.needs_cc
def test_corrupt_or_foreign_record_is_retuned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    tuner(tmp_path).tune(PROBLEM)
    (path,) = records(tmp_path)
    path.write_text(content)
    calls = count_timings(monkeypatch)
    result = tuner(tmp_path).tune(PROBLEM)
    assert result.timed and calls  # (a rematch may time twice)
    assert json.loads(path.read_text())["blocking"]["mc"] == result.blocking.mc


@pytest.mark.needs_cc
def test_record_with_an_impossible_blocking_is_retuned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tuner(tmp_path).tune(PROBLEM)
    (path,) = records(tmp_path)
    record = json.loads(path.read_text())
    record["blocking"]["mc"] = PROBLEM.default_blocking().mr + 1  # not whole register tiles
    path.write_text(json.dumps(record))
    calls = count_timings(monkeypatch)
    assert tuner(tmp_path).tune(PROBLEM).timed and calls


@pytest.mark.needs_cc
def test_record_edited_after_it_was_written_is_retuned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A possible blocking written over the recorded one fails the record's seal."""
    tuner(tmp_path).tune(PROBLEM)
    (path,) = records(tmp_path)
    record = json.loads(path.read_text())
    record["blocking"]["kc"] += 8
    path.write_text(json.dumps(record))
    calls = count_timings(monkeypatch)
    assert tuner(tmp_path).tune(PROBLEM).timed and calls


def test_nothing_to_tune_is_not_timed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_timing(monkeypatch)
    tiny = GemmProblem("float", detect_isa(), False, True, (4,), 8, 8, CacheSizes())
    result = tuner(tmp_path).tune(tiny)  # the small path only: no blocked GEMM at all
    assert not result.timed and result.blocking == tiny.default_blocking()
    assert records(tmp_path) == []


@pytest.mark.needs_cc
def test_progress_is_one_line_per_problem(tmp_path: Path) -> None:
    out = io.StringIO()
    result = tuner(tmp_path, out).tune(PROBLEM)
    lines = out.getvalue().splitlines()
    assert all(line.startswith("lucid autotune: GEMM float 64x200x300") for line in lines)
    assert "building" in lines[0] and f"kc={result.blocking.kc}" in lines[-1]
    assert "\r" not in out.getvalue()

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = autotune._Progress(tty, "label")
    bar.update(0, 4, "building")
    for _ in range(4):
        bar.tick()
    bar.done("best")
    text = tty.getvalue()
    assert text.count("\n") == 1 and text.endswith("best\x1b[K\n")
    assert "\rlabel [" + "#" * bar.WIDTH + "] 4/4 best" in text


def test_codegen_uses_blocking_for_and_its_default_is_unchanged() -> None:
    model = nn.Sequential(nn.Linear(300, 200), nn.HardSwish(), nn.Linear(200, 40))
    graph = trace(model, np.zeros((64, 300), np.float32))
    fixed = {"isa": "avx2", "caches": CacheSizes()}
    plain = emit_c(graph, CodegenOptions(**fixed)).source  # type: ignore[arg-type]
    same = emit_c(
        graph,
        CodegenOptions(**fixed, blocking_for=lambda p: p.default_blocking()),  # type: ignore[arg-type]
    ).source
    assert same == plain

    seen: list[GemmProblem] = []

    def tuned(p: GemmProblem):
        seen.append(p)
        b = p.default_blocking()
        return type(b)(b.mr, b.nr, mc=2 * b.mr, kc=128, nc=2 * b.nr)

    source = emit_c(graph, CodegenOptions(**fixed, blocking_for=tuned)).source  # type: ignore[arg-type]
    assert [(p.m_dims, p.n, p.k, p.trans_b) for p in seen] == [
        ((64,), 200, 300, True),
        ((64,), 40, 200, True),
    ]
    mr, nr = seen[0].default_blocking().mr, seen[0].default_blocking().nr
    assert f"cache blocks mc={2 * mr} kc=128 nc={2 * nr}" in source


@pytest.mark.needs_cc
@pytest.mark.slow
def test_compiled_with_autotune_equals_eager_and_tunes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LUCID_CACHE_DIR", str(tmp_path))
    lucid.random.seed(0)
    model = nn.Sequential(nn.Linear(300, 200), nn.HardSwish(), nn.Linear(200, 40))
    model.eval()
    x = np.random.default_rng(1).standard_normal((48, 300)).astype(np.float32)
    with lucid.no_grad():
        want = model(lucid.Tensor(x)).data
        cm = lucid.compile(model, dynamic_batch=True, options={"autotune": True})
        np.testing.assert_allclose(cm(x).data, want, **F32_TOL)
    err = capfd.readouterr().err
    # the batch seen at trace time (48) is the M the GEMMs are timed with
    assert "lucid autotune: GEMM float 48x200x300" in err
    assert "lucid autotune: GEMM float 48x40x200" in err
    tuned = []
    for path in records(tmp_path):
        b = json.loads(path.read_text())["blocking"]
        tuned.append(f"cache blocks mc={b['mc']} kc={b['kc']} nc={b['nc']}")
    assert len(tuned) == 2
    shown = re.findall(r"cache blocks mc=\d+ kc=\d+ nc=\d+", cm.c_source or "")
    assert sorted(shown) == sorted(tuned)  # the tuned blockings are what the C runs

    forbid_timing(monkeypatch)
    with lucid.no_grad():
        again = lucid.compile(model, dynamic_batch=True, options={"autotune": True})
        np.testing.assert_allclose(again(x).data, want, **F32_TOL)
    assert "lucid autotune" not in capfd.readouterr().err
    assert again.c_source == cm.c_source


@pytest.mark.needs_cc
@pytest.mark.slow
def test_cli_emit_c_autotune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lucid.cli import main

    monkeypatch.setenv("LUCID_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "g.lir"
    path.write_text(
        "graph @forward(%x: f32[N,300]) params(%w: f32[200,300]) -> (f32[N,200]) {\n"
        "  %0 = linear %x, %w : f32[N,200]\n"
        "  return %0\n"
        "}\n"
    )
    assert main(["emit-c", str(path), "--autotune"]) == 0
    out = capsys.readouterr()
    assert "lucid autotune: GEMM float 256x200x300" in out.err  # a symbolic batch: 256 rows
    (record,) = records(tmp_path / "cache")
    b = json.loads(record.read_text())["blocking"]
    assert f"cache blocks mc={b['mc']} kc={b['kc']} nc={b['nc']}" in out.out


@pytest.mark.parametrize(("rematch", "winner"), [([1.0, 0.5], 1), ([1.0, 0.99], 0)])
@pytest.mark.needs_cc
def test_a_winner_must_beat_the_cost_model_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rematch: list[float], winner: int
) -> None:
    answers = iter([None, rematch])

    def fake(ffi: object, fns: list[object], *args: object, **kwargs: object) -> list[float]:
        given = next(answers)
        return given if given is not None else [1.0, 0.5] + [0.9] * (len(fns) - 2)

    monkeypatch.setattr(autotune, "measure", fake)
    result = tuner(tmp_path).tune(PROBLEM)
    assert result.blocking == result.candidates[winner]
