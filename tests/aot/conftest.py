"""Exports shared by the AOT tests: each export compiles C, so the seed model is built once."""

from __future__ import annotations

import pytest

import lucid
from lucid.runtime.aot import ExportResult, export
from tests.models import seed_model


@pytest.fixture(scope="session")
def seed_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExportResult]:
    """The seed model exported with default flags: embedded weights, and a weights file."""
    out = tmp_path_factory.mktemp("aot_seed")
    model = seed_model()
    example = (lucid.randn(2, 3),)
    return {
        "embedded": export(model, example, out / "seed"),
        "file": export(model, example, out / "seed-file", weights="file"),
    }
