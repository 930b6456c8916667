"""Fixtures for the IR tests."""

from __future__ import annotations

import pytest

from lucid.ir import Graph
from tests.models import seed_graph


@pytest.fixture
def seed() -> Graph:
    return seed_graph()
