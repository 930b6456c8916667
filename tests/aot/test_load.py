"""lucid.runtime.load: exported libraries called from Python, validated by their own description."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid.errors import IndexRangeError, InputError, LucidError
from lucid.runtime.aot import ExportResult, export
from lucid.runtime.loader import NotAnExportError, load
from tests.models import seed_model

from ._helpers import ATOL, CC, QUICK, RTOL, CrossEntropyModel, eager, random_mlp

pytestmark = pytest.mark.needs_cc


@pytest.fixture
def seed_lib(seed_exports: dict[str, ExportResult]) -> tuple[object, Path]:
    return seed_model(), seed_exports["embedded"].library


def test_seed_round_trip(seed_lib) -> None:
    model, path = seed_lib
    loaded = load(path)
    assert repr(loaded) == "LoadedModel('seed', (x: f32[N,3]) -> (output0: f32[N,2]))"
    assert loaded.embedded and loaded.lucid_version == lucid.__version__
    rng = np.random.default_rng(0)
    for batch in (1, 2, 5, 100):
        x = (rng.standard_normal((batch, 3)) * 5).astype(np.float32)
        got = loaded(x)
        assert got.shape == (batch, 2) and got.dtype == np.float32
        np.testing.assert_allclose(got, eager(model, x), rtol=RTOL, atol=ATOL)
    # a Tensor and a non-contiguous view are accepted too
    x = rng.standard_normal((6, 6)).astype(np.float32)[:, ::2]
    np.testing.assert_allclose(loaded(lucid.tensor(x)), eager(model, x), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(loaded(x), eager(model, x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.slow
def test_random_mlps_round_trip(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lucid.random.seed(seed)
    model, width = random_mlp(rng)
    weights = "file" if seed % 2 else "embedded"
    result = export(
        model, (lucid.randn(3, width),), tmp_path / f"mlp{seed}", weights=weights, flags=QUICK
    )
    loaded = load(result.library)  # finds mlpN.weights beside the library by itself
    assert loaded.embedded == (weights == "embedded")
    for batch in (1, 17):
        x = rng.standard_normal((batch, width)).astype(np.float32)
        np.testing.assert_allclose(loaded(x), eager(model, x), rtol=RTOL, atol=ATOL)


def test_two_inputs_and_index_error(tmp_path: Path) -> None:
    model = CrossEntropyModel()
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    t = np.array([0, 1, 2, 3], np.int64)
    loaded = load(
        export(model, (lucid.tensor(x), lucid.tensor(t)), tmp_path / "ce", flags=QUICK).library
    )
    np.testing.assert_allclose(loaded(x, t), eager(model, x, t), rtol=RTOL, atol=ATOL)
    with pytest.raises(IndexRangeError, match="index input is out of range"):
        loaded(x, np.array([0, 1, 2, 4], np.int64))
    with pytest.raises(InputError, match="batch 3, but 4"):
        loaded(x, t[:3])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 4), np.float32), r"expected f32\[N,3\], got float32\[2, 4\]"),
        (np.zeros((2, 3), np.float64), r"expected f32\[N,3\], got float64\[2, 3\]"),
        (np.zeros(3, np.float32), r"expected f32\[N,3\], got float32\[3\]"),
        (np.zeros((0, 3), np.float32), "batch size must be at least 1"),
    ],
)
def test_wrong_input_is_a_clear_error(seed_lib, bad: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load(seed_lib[1])(bad)


def test_wrong_input_count(seed_lib) -> None:
    with pytest.raises(InputError, match="takes 1 input"):
        load(seed_lib[1])(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.float32))


def test_threads_share_one_loaded_model(seed_lib) -> None:
    path = seed_lib[1]
    loaded = load(path)
    x = np.random.default_rng(2).standard_normal((300, 3)).astype(np.float32)
    want = loaded(x)
    results: list[np.ndarray] = []

    def work() -> None:
        for _ in range(20):
            results.append(loaded(x))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and all(np.array_equal(r, want) for r in results)


def test_libraries_that_are_not_exports_are_refused(tmp_path: Path) -> None:
    libm = Path("/lib/x86_64-linux-gnu/libm.so.6")
    if libm.exists():
        with pytest.raises(NotAnExportError, match="not a library written by lucid.export"):
            load(libm)
    (tmp_path / "notes.so").write_text("hello")
    with pytest.raises(NotAnExportError, match="not an ELF"):
        load(tmp_path / "notes.so")
    if CC is not None:
        src = tmp_path / "other.c"
        # exports a symbol with the right suffix but the wrong size: still refused before dlopen
        src.write_text(
            'const char fake_lucid_aot_magic[8] = "x";\nint fake_run(void) { return 1; }\n'
        )
        subprocess.run(
            [CC, "-shared", "-fPIC", str(src), "-o", str(tmp_path / "other.so")], check=True
        )
        with pytest.raises(NotAnExportError, match="not a library written by lucid.export"):
            load(tmp_path / "other.so")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.so")


def test_wrong_magic_is_refused(tmp_path: Path) -> None:
    if CC is None:
        pytest.skip("no C compiler")
    src = tmp_path / "fake.c"
    src.write_text('const char fake_lucid_aot_magic[16] = "lucid-aot-abi-9";\n')
    subprocess.run([CC, "-shared", "-fPIC", str(src), "-o", str(tmp_path / "fake.so")], check=True)
    with pytest.raises(NotAnExportError, match="lucid-aot-abi-9"):
        load(tmp_path / "fake.so")


def test_bad_weights_file_is_refused(tmp_path: Path) -> None:
    result = export(seed_model(), (lucid.randn(2, 3),), tmp_path / "s", weights="file", flags=QUICK)
    assert result.weights is not None
    data = bytearray(result.weights.read_bytes())
    data[-1] ^= 0xFF
    result.weights.write_bytes(bytes(data))
    with pytest.raises(LucidError, match="not for this model, or is truncated or corrupt"):
        load(result.library)
    shutil.copy(result.weights, tmp_path / "elsewhere.weights")
    result.weights.unlink()
    with pytest.raises(LucidError, match="cannot open or read"):
        load(result.library)


def test_embedded_library_can_load_a_weights_file(tmp_path: Path) -> None:
    model = seed_model()
    emb = export(model, (lucid.randn(2, 3),), tmp_path / "e", flags=QUICK)
    for p in model.parameters():
        p.data = p.data * 2  # "fine-tuned" weights of the same architecture
    fil = export(model, (lucid.randn(2, 3),), tmp_path / "f", weights="file", flags=QUICK)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(
        load(emb.library, weights=fil.weights)(x), eager(model, x), rtol=RTOL, atol=ATOL
    )


def test_public_names() -> None:
    import lucid.runtime
    from lucid.runtime import aot

    assert lucid.export is aot.export and lucid.runtime.load is load


@pytest.mark.parametrize("weights", ["embedded", "file"])
@pytest.mark.slow
def test_a_handle_runs_its_weights_packed_at_open(tmp_path: Path, weights: str) -> None:
    """NAME_open packs the large GEMM weights once; runs through the handle read the packed
    copy. They must give bitwise the results of the handle-free NAME_run_threads (which packs
    in every call) and match eager lucid, for both kinds of weights, on 1 and 2 threads."""
    from lucid import nn

    lucid.random.seed(4)
    model = nn.Sequential(nn.Linear(64, 200), nn.HardSwish(), nn.Linear(200, 48)).eval()
    result = export(model, (lucid.randn(3, 64),), tmp_path / "m", weights=weights, flags=QUICK)
    # both weights have a slot (so the handle really holds packed copies)
    assert "static const int pack_param[2] = { 0, 2 };" in result.source.read_text()
    loaded = load(result.library)
    ffi, lib = loaded._ffi, loaded._lib
    rng = np.random.default_rng(0)
    for batch in (1, 37, 300):
        x = rng.standard_normal((batch, 64)).astype(np.float32)
        got = loaded(x)
        np.testing.assert_allclose(got, eager(model, x), rtol=RTOL, atol=ATOL)
        if weights == "embedded":
            for threads in (1, 2):
                out = np.empty((batch, 48), np.float32)
                ins = ffi.new("void *[]", [ffi.from_buffer(x)])
                outs = ffi.new("void *[]", [ffi.from_buffer(out)])
                assert lib.m_run_threads(ins, outs, batch, threads) == 0
                np.testing.assert_array_equal(out, got)
