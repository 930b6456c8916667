"""Batch inference over a partitioned dataset on a Dask cluster, against one process.

    pip install 'dask[distributed]'
    python examples/dask_batch_inference.py [--files 24] [--rows 16384] [--workers 1,2]

The dataset is a directory of .npy files (written to a temporary directory here); each task
loads one file and runs a compiled model on it. The model goes to the workers as a pickled
`lucid.compile` module (pickled by model and options: each worker builds it, or loads it from
the compile cache, at its first call) or, with --exported, as an exported library (pickled by
its path). Each worker runs one thread with one lucid thread, so N workers use N cores.
Prints rows per second for one process and for each cluster size, and checks every result
against the one-process run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import lucid
from lucid import nn


def make_model() -> nn.Module:
    lucid.random.seed(0)
    return nn.Sequential(
        nn.Linear(64, 256), nn.HardSwish(), nn.Linear(256, 256), nn.HardSwish(), nn.Linear(256, 10)
    ).eval()


def write_dataset(directory: Path, files: int, rows: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(files):
        path = directory / f"part-{i:04d}.npy"
        np.save(path, rng.standard_normal((rows, 64)).astype(np.float32))
        paths.append(path)
    return paths


def predict_file(model: Any, path: Path) -> np.ndarray:
    """One task: the model's class predictions for one file (a compiled module or a library)."""
    lucid.set_num_threads(1)
    x = np.load(path)
    with lucid.no_grad():
        out = model(x)
    return np.asarray(getattr(out, "data", out)).argmax(axis=1)


def one_process(model: Any, paths: list[Path]) -> tuple[float, list[np.ndarray]]:
    predict_file(model, paths[0])  # the build (or cache load), as each worker does once
    start = time.perf_counter()
    results = [predict_file(model, p) for p in paths]
    return time.perf_counter() - start, results


def on_cluster(model: Any, paths: list[Path], workers: int) -> tuple[float, list[np.ndarray]]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        shared = client.scatter(model, broadcast=True)  # pickled once per worker
        client.gather(client.map(predict_file, [shared] * workers, paths[:workers]))  # warm up
        start = time.perf_counter()
        results = client.gather(client.map(predict_file, [shared] * len(paths), paths))
        return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--workers", default="1,2", help="cluster sizes, comma-separated")
    parser.add_argument("--exported", action="store_true", help="ship an exported .so")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lucid-dask-") as tmp:
        paths = write_dataset(Path(tmp), args.files, args.rows)
        model: Any = lucid.compile(make_model())
        if args.exported:
            result = lucid.export(make_model(), np.load(paths[0])[:1], Path(tmp) / "model")
            model = lucid.runtime.load(result.library)
        rows = args.files * args.rows
        seconds, want = one_process(model, paths)
        print(f"cpu: {os.cpu_count()} cores; {args.files} files x {args.rows} rows")
        print(f"one process:      {rows / seconds:12,.0f} rows/s")
        for n in (int(w) for w in args.workers.split(",")):
            seconds, got = on_cluster(model, paths, n)
            assert all(np.array_equal(a, b) for a, b in zip(got, want)), "results differ"
            print(f"dask, {n} worker(s): {rows / seconds:12,.0f} rows/s")


if __name__ == "__main__":
    main()
