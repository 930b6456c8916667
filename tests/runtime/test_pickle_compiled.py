"""A compiled module pickles by its source module and options (issue 14), so it can be sent to
another process, where it compiles at its first call."""

from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pytest

import lucid
from lucid import nn


def _model() -> nn.Module:
    lucid.random.seed(7)
    return nn.Sequential(nn.Linear(3, 5), nn.HardSwish(), nn.Linear(5, 2))


def _x() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)


def _run_pickled(blob: bytes) -> np.ndarray:
    compiled = pickle.loads(blob)
    with lucid.no_grad():
        return compiled(lucid.Tensor(_x())).data


def test_round_trip_keeps_module_and_options() -> None:
    compiled = lucid.compile(
        _model(), backend="interpreter", dynamic_batch=True, options={"max_entries": 3}
    )
    with lucid.no_grad():
        want = compiled(lucid.Tensor(_x())).data
    copy = pickle.loads(pickle.dumps(compiled))
    assert copy.dynamic_batch and copy.options == compiled.options
    assert copy.backend.name == "interpreter" and not copy.signatures
    with lucid.no_grad():
        np.testing.assert_array_equal(copy(lucid.Tensor(_x())).data, want)


@pytest.mark.needs_cc
def test_a_spawned_process_runs_the_pickled_module() -> None:
    model = _model()
    compiled = lucid.compile(model)
    with lucid.no_grad():
        want = model(lucid.Tensor(_x())).data
        compiled(lucid.Tensor(_x()))  # warms the cache the child loads from
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        got = pool.apply(_run_pickled, (pickle.dumps(compiled),))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
