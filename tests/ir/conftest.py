"""Fixtures for the IR tests."""

from __future__ import annotations

import pytest

from lucid.ir import Graph
from tests.ir.graphs import seed_model


@pytest.fixture
def seed() -> Graph:
    return seed_model()
