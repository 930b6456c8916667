"""What the exported files are: dependencies, exported symbols, the header as C99 and C++,
names and flags, and the export time of a 50M-parameter model."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.codegen import aot_abi as abi
from lucid.runtime.aot import ExportResult, export, model_name
from tests.models import seed_model

from ._helpers import QUICK

pytestmark = pytest.mark.needs_cc
ALLOWED_NEEDED = {"libc.so.6", "libm.so.6", "libpthread.so.0", "ld-linux-x86-64.so.2"}


@pytest.fixture
def seed(seed_exports: dict[str, ExportResult]) -> ExportResult:
    return seed_exports["embedded"]


def _tool(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_writes_library_header_and_source(seed: ExportResult) -> None:
    assert seed.library.name == "seed.so" and seed.header.name == "seed.h"
    assert seed.source.name == "seed.c" and seed.weights is None
    source = seed.source.read_text()
    assert ".incbin" in source and "fused_mlp" in source  # the optimised graph, weights via incbin
    assert "Python.h" not in source and "-ffast-math" not in " ".join(seed.command)


def test_depends_on_libc_and_libm_only_and_has_no_rpath(seed: ExportResult) -> None:
    dynamic = _tool("readelf", "-d", str(seed.library))
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic))
    assert needed and needed <= ALLOWED_NEEDED, needed
    assert "RPATH" not in dynamic and "RUNPATH" not in dynamic


def test_exports_only_the_api(seed: ExportResult) -> None:
    out = _tool("nm", "-D", "--defined-only", str(seed.library))
    symbols = {line.split()[-1] for line in out.splitlines() if line.strip()}
    declared = {re.search(r"(\w+)\(", f.decl).group(1) for f in abi.api("seed", embedded=True)}
    assert symbols == declared | {"seed_lucid_aot_magic"}


def test_file_weights_library_has_no_handle_free_run(seed_exports: dict[str, ExportResult]) -> None:
    result = seed_exports["file"]
    out = _tool("nm", "-D", "--defined-only", str(result.library))
    assert (
        "seed_file_model_run" in out
        and "seed_file_run\n" not in out
        and "_weights_start" not in out
    )
    assert "seed_file_run(" not in result.header.read_text()
    assert result.weights is not None and result.weights.read_bytes()[:8] == b"LUCIDWTS"


@pytest.mark.parametrize(
    "compiler, std",
    [("gcc", "-std=c99"), ("gcc", "-std=c11"), ("g++", "-std=c++11"), ("g++", "-std=c++17")],
)
def test_header_compiles_as_c99_and_cpp(
    seed: ExportResult, tmp_path: Path, compiler: str, std: str
) -> None:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    ext = "cpp" if compiler == "g++" else "c"
    caller = tmp_path / f"use.{ext}"
    caller.write_text(
        '#include "seed.h"\n#include "seed.h" /* include guard */\n'
        "int main(void) {\n"
        "    float x[3] = {1, 2, 3}, y[2];\n"
        "    const void *in[1] = {x};\n    void *out[1] = {y};\n"
        "    int rc = seed_run(in, out, 1);\n"
        "    return rc != seed_OK || seed_input_dtype(0) != seed_F32 || seed_input_shape(0)[0] != seed_DYNAMIC;\n"
        "}\n"
    )
    exe = tmp_path / "use"
    cmd = [
        compiler,
        std,
        "-pedantic",
        "-Wall",
        "-Wextra",
        "-Werror",
        f"-I{seed.header.parent}",
        str(caller),
        str(seed.library),
        f"-Wl,-rpath,{seed.library.parent}",
        "-o",
        str(exe),
    ]
    build = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr
    assert subprocess.run([str(exe)], check=False).returncode == 0


@pytest.mark.parametrize(
    "stem, name",
    [
        ("my-model", "my_model"),
        ("3net", "m_3net"),
        ("a b.c", "a_b_c"),
        ("__", "model"),
        ("for", "m_for"),
    ],
)
def test_model_name_from_stem(stem: str, name: str) -> None:
    assert model_name(stem) == name


def test_default_name_is_the_sanitised_stem(tmp_path: Path) -> None:
    result = export(seed_model(), (lucid.randn(1, 3),), tmp_path / "my-model", flags=QUICK)
    assert result.name == "my_model" and result.library.name == "my-model.so"
    assert "my_model_run(" in result.header.read_text()


@pytest.mark.parametrize("bad", ["a-b", "1x", 'x"; system("rm")', "", "x" * 60])
def test_explicit_name_must_be_an_identifier(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="C identifier"):
        export(seed_model(), (lucid.randn(1, 3),), tmp_path / "m", name=bad)


def test_user_strings_do_not_reach_c_identifiers(tmp_path: Path) -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            setattr(self, "evil*/ int x; /*", nn.Linear(3, 2))

        def forward(self, inp: lucid.Tensor) -> lucid.Tensor:
            return getattr(self, "evil*/ int x; /*")(inp)

    from lucid.runtime.loader import load

    result = export(Odd(), (lucid.randn(2, 3),), tmp_path / "odd", flags=QUICK)
    for text in (result.source.read_text(), result.header.read_text()):
        assert "*/ int x; /*" not in text  # only ever inside a comment, defused
    assert load(result.library)(np.ones((1, 3), np.float32)).shape == (1, 2)


@pytest.mark.parametrize("flag", ["-ffast-math", "-Ofast", "-funsafe-math-optimizations"])
def test_numerics_breaking_flags_are_refused(tmp_path: Path, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        export(seed_model(), (lucid.randn(1, 3),), tmp_path / "m", flags=["-O2", flag])


def test_user_flags_and_march_native(tmp_path: Path) -> None:
    result = export(
        seed_model(), (lucid.randn(1, 3),), tmp_path / "m", flags=["-O1"], march="native"
    )
    assert (
        "-O1" in result.command
        and "-march=native" in result.command
        and "-O3" not in result.command
    )


def test_bad_options_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="weights must be"):
        export(seed_model(), (lucid.randn(1, 3),), tmp_path / "m", weights="inline")
    with pytest.raises(NotImplementedError, match="with_backward"):
        export(seed_model(), (lucid.randn(1, 3),), tmp_path / "m", with_backward=True)
    assert not list(tmp_path.iterdir())  # nothing written on a refused export


def test_static_batch_export(tmp_path: Path) -> None:
    from lucid.runtime.loader import load

    result = export(
        seed_model(), (lucid.randn(4, 3),), tmp_path / "s", dynamic_batch=False, flags=QUICK
    )
    model = load(result.library)
    assert model.inputs[0][2] == (4, 3)
    with pytest.raises(lucid.errors.InputError):
        model(np.zeros((5, 3), np.float32))


@pytest.mark.slow
def test_large_model_exports_in_seconds(tmp_path: Path) -> None:
    lucid.random.seed(0)
    model = nn.Sequential(
        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096)
    )
    n = sum(p.data.size for p in model.parameters())
    assert n > 50_000_000
    start = time.perf_counter()
    result = export(model, (lucid.randn(2, 4096),), tmp_path / "big")
    seconds = time.perf_counter() - start
    print(
        f"\nexport of {n / 1e6:.1f}M parameters: {seconds:.2f} s (compile {result.compile_seconds:.2f} s)"
    )
    assert seconds < 20
    assert result.library.stat().st_size > n * 4
    from lucid.runtime.loader import load

    x = np.random.default_rng(0).standard_normal((3, 4096)).astype(np.float32)
    with lucid.no_grad():
        want = model(lucid.tensor(x)).data
    got = load(result.library)(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
