"""A compiled module and an exported library used from other processes: Dask workers (a
LocalCluster) for batch inference, and multiprocessing with the spawn start method (issue 19).
Both pickle by what they were made from (the model and options; the library's path)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lucid
from lucid import nn

ROOT = Path(__file__).resolve().parents[2]


def _model() -> nn.Module:
    lucid.random.seed(11)
    return nn.Sequential(nn.Linear(6, 16), nn.HardSwish(), nn.Linear(16, 3)).eval()


def _parts() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.standard_normal((int(n), 6)).astype(np.float32) for n in (5, 1, 9, 4)]


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    with lucid.no_grad():
        out = model(x)
    return np.asarray(getattr(out, "data", out))


@pytest.mark.needs_cc
def test_an_exported_library_pickles_by_path_and_runs_in_a_spawned_process(
    tmp_path: Path,
) -> None:
    model = _model()
    result = lucid.export(model, _parts()[0], tmp_path / "lib" / "mlp")
    loaded = lucid.runtime.load(result.library)
    copy = pickle.loads(pickle.dumps(loaded))
    assert copy.path == result.library.resolve() and copy.name == loaded.name
    x = _parts()[2]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_predict, (loaded, x))
    np.testing.assert_allclose(got, _predict(model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.needs_cc
@pytest.mark.slow
def test_batch_inference_on_a_dask_cluster_matches_one_process(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    model = _model()
    compiled = lucid.compile(model)
    library = lucid.runtime.load(lucid.export(model, _parts()[0], tmp_path / "mlp").library)
    parts = _parts()
    want = [_predict(model, x) for x in parts]
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        for shipped in (compiled, library):
            remote = client.scatter(shipped, broadcast=True)
            futures = client.map(_predict, [remote] * len(parts), parts, pure=False)
            got = client.gather(futures)
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.needs_cc
@pytest.mark.slow
def test_the_dask_example_runs(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "dask_batch_inference.py"),
            "--files",
            "4",
            "--rows",
            "64",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "LUCID_CACHE_DIR": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "one process:" in run.stdout and "dask, 2 worker(s):" in run.stdout
