"""The backend registry: the built-in backends, and a new backend plugged in by name."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
from lucid.errors import LucidError
from lucid.runtime import backends
from tests.models import SeedModel


def test_builtin_backends_are_registered():
    assert {"c", "interpreter"} <= set(backends.available_backends())
    assert backends.get_backend("interpreter").name == "interpreter"


class Doubling:
    """A toy backend: the interpreter's result times two (so it cannot pass for the oracle)."""

    name = "test-doubling"

    def __init__(self) -> None:
        self.prepared = 0

    def prepare(self, graph, options):
        self.prepared += 1
        inner = backends.InterpreterBackend().prepare(graph, options)

        class Exe(backends.InterpreterExecutable):
            def run(self, *arrays):
                return tuple(2 * o for o in inner.run(*arrays))

        return Exe(graph, backend=self.name)


def test_a_registered_backend_is_used_by_name():
    backend = backends.register_backend(Doubling())
    try:
        with pytest.raises(LucidError, match="already registered"):
            backends.register_backend(Doubling())
        model = SeedModel().eval()
        cm = lucid.compile(model, backend="test-doubling", dynamic_batch=True)
        x = np.ones((3, 3), np.float32)
        np.testing.assert_allclose(cm(x).data, 2 * model(lucid.Tensor(x)).data, rtol=1e-6)
        cm(np.ones((5, 3), np.float32))
        assert backend.prepared == 1
        assert isinstance(cm.entry().forward, backends.Executable)
    finally:
        backends._BACKENDS.pop("test-doubling")
