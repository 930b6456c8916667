"""An exported library checks the running CPU for every instruction set it was compiled for:
on a CPU without one, NAME_open and the run functions return NAME_E_CPU (and the Python loader
raises naming the missing sets) instead of dying of SIGILL (issue 18)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import cffi
import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.codegen import aot_abi as abi
from lucid.errors import LucidError
from lucid.runtime.aot import ExportResult, export
from lucid.runtime.loader import load

pytestmark = pytest.mark.needs_cc

ENTRY_POINTS = ("open", "close", "model_run", "model_run_threads", "run", "run_threads")


def _model() -> tuple[nn.Module, np.ndarray]:
    lucid.random.seed(3)
    model = nn.Sequential(nn.Linear(8, 16), nn.HardSwish(), nn.Linear(16, 4)).eval()
    return model, np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)


def _error_code(result: ExportResult, name: str) -> int:
    found = re.search(rf"\b{result.name}_E_{name} = (\d+),", result.header.read_text())
    assert found is not None, f"{result.name}_E_{name} is not in the header"
    return int(found.group(1))


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    found = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return set(found.group(1).split()) if found else set()


def test_a_cpu_lacking_an_instruction_set_gets_an_error_code_not_sigill(tmp_path: Path) -> None:
    """The check's input faked at compile time (LUCID_TEST_CPU_LACKS): the C API and the loader."""
    model, x = _model()
    result = export(
        model, x, tmp_path / "m", march="native", flags=["-O1", '-DLUCID_TEST_CPU_LACKS="avx512f"']
    )
    ffi = cffi.FFI()
    ffi.cdef(abi.cdef(result.name, embedded=True))
    lib = ffi.dlopen(str(result.library))

    def fn(suffix: str):
        return getattr(lib, f"{result.name}_{suffix}")

    assert ffi.string(fn("cpu_missing")(0)) == b"avx512f"
    err = ffi.new("int *")
    assert fn("open")(ffi.NULL, err) == ffi.NULL
    cpu = _error_code(result, "CPU")
    assert err[0] == cpu
    ins = ffi.new("void *[]", [ffi.from_buffer(x)])
    out = np.empty((3, 4), np.float32)
    outs = ffi.new("void *[]", [ffi.from_buffer(out)])
    assert fn("run")(ins, outs, 3) == cpu
    assert b"instruction set" in ffi.string(fn("strerror")(cpu))
    with pytest.raises(LucidError, match=r"instruction sets this CPU lacks: avx512f; .*x86-64"):
        load(result.library)


@pytest.mark.skipif(
    "avx512_vp2intersect" in _cpu_flags(), reason="this CPU has AVX512-VP2INTERSECT"
)
def test_a_library_built_for_a_feature_this_cpu_lacks_is_refused(tmp_path: Path) -> None:
    """A real missing feature: AVX512-VP2INTERSECT, which few CPUs have."""
    model, x = _model()
    result = export(model, x, tmp_path / "m", flags=["-O1", "-mavx512vp2intersect"])
    with pytest.raises(LucidError, match=r"lacks: avx512vp2intersect;"):
        load(result.library)


def test_this_cpu_runs_its_own_native_build(tmp_path: Path) -> None:
    model, x = _model()
    result = export(model, x, tmp_path / "m", march="native", flags=["-O1"])
    np.testing.assert_allclose(load(result.library)(x), model(lucid.Tensor(x)).data, rtol=1e-5)


def _vector_instructions(library: Path, function: str) -> tuple[int, int]:
    """(VEX/EVEX-encoded instructions, all instructions) in `function` of `library`."""
    text = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(library)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    body = re.search(rf"<{re.escape(function)}>:\n(.*?)(?:\n\n|\Z)", text, re.DOTALL)
    assert body is not None, f"{function} not in {library}"
    mnemonics = [
        line.split("\t")[1].split()[0] for line in body.group(1).splitlines() if "\t" in line
    ]
    vex = [m for m in mnemonics if m.startswith(("v", "k"))]
    return len(vex), len(mnemonics)


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump")
@pytest.mark.skipif("avx2" not in _cpu_flags(), reason="needs a CPU with AVX2 for the contrast")
def test_public_functions_are_baseline_code_and_the_kernels_are_not(tmp_path: Path) -> None:
    """No instruction of the checked sets may run before the check: the public functions are
    compiled for baseline x86-64 (no VEX/EVEX encodings), the kernels for the export's march."""
    model, x = _model()
    result = export(model, x, tmp_path / "m", march="native", flags=["-O2"])
    for entry in (*ENTRY_POINTS, "cpu_missing"):
        vex, total = _vector_instructions(result.library, f"{result.name}_{entry}")
        assert total > 0 and vex == 0, f"{entry}: {vex} VEX/EVEX instructions"
    text = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(result.library)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kernels = sorted(set(re.findall(r"<(k\d+_[a-z_]+)(?:\.[a-z]+\.\d+)?>:", text)))
    assert kernels, "no kernel function in the library"
    # the kernels (never inlined into the program body) use the native instruction sets
    assert sum(_vector_instructions(result.library, k)[0] for k in kernels) > 0, kernels


def test_a_baseline_export_needs_nothing_beyond_x86_64(tmp_path: Path) -> None:
    model, x = _model()
    result = export(model, x, tmp_path / "m", march="x86-64", flags=["-O1"])
    loaded = load(result.library)
    assert loaded._fn("cpu_missing")(0) == loaded._ffi.NULL
    np.testing.assert_allclose(loaded(x), model(lucid.Tensor(x)).data, rtol=1e-5, atol=1e-6)
