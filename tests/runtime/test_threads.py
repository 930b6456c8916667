"""lucid.set_num_threads / get_num_threads: validation, default, and results independent of it."""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_compile_models import BACKENDS, mlp

import lucid


@pytest.fixture(autouse=True)
def _restore_threads():
    before = lucid.get_num_threads()
    yield
    lucid.set_num_threads(before)


def test_default_is_the_cores_available_to_the_process():
    from lucid.runtime import threads

    assert threads._available_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_set_num_threads_rejects_non_positive_ints(bad):
    with pytest.raises((ValueError, TypeError), match="expected an int >= 1"):
        lucid.set_num_threads(bad)


def test_set_and_get():
    lucid.set_num_threads(np.int64(3))
    assert lucid.get_num_threads() == 3 and type(lucid.get_num_threads()) is int


@pytest.mark.parametrize("backend", BACKENDS)
def test_results_equal_across_thread_counts(backend):
    lucid.random.seed(11)
    model = mlp([96, 256, 200, 10]).eval()
    cm = lucid.compile(model, backend=backend, dynamic_batch=True)
    x = np.random.default_rng(11).standard_normal((300, 96)).astype(np.float32)
    outs = []
    for n in (1, 2, 1):
        lucid.set_num_threads(n)  # read at every call: no recompilation
        outs.append(cm(x).data)
    assert len(cm.signatures) == 1
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    np.testing.assert_allclose(outs[0], model(lucid.Tensor(x)).data, rtol=1e-4, atol=1e-5)
