"""Suite-wide fixtures and switches: a private compile cache per run, --update-goldens, the
seed model, the `slow` and `needs_cc` markers (declared in pyproject.toml), and `.lir` files
with RUN lines as FileCheck tests (tests/lir_runner.py)."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import pytest

from tests import models

pytest_plugins = ["tests.lir_runner"]


def c_compiler() -> str | None:
    """The compiler lucid's builds would run ($CC, else `cc`), or None if it is not on PATH."""
    words = shlex.split(os.environ.get("CC", "")) or ["cc"]
    return shutil.which(words[0])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the quick part first: the `slow` tests go last, each part in collection order (a
    stable sort), so a broken change fails within the first minutes of a whole run, also
    under pytest-xdist, which hands tests to its workers in this order. Then skip the
    `needs_cc` tests, with the reason, on a machine without a C compiler."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)
    if c_compiler() is not None:
        return
    cc = os.environ.get("CC", "").strip()
    missing = f"$CC={cc!r} is not on PATH" if cc else "`cc` is not on PATH (or set $CC)"
    skip = pytest.mark.skip(reason=f"needs a C compiler: {missing}")
    for item in items:
        if item.get_closest_marker("needs_cc") is not None:
            item.add_marker(skip)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite tests/golden/* from the current output instead of comparing",
    )


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point lucid's compile cache at a directory of this run, so runs never share builds."""
    os.environ["LUCID_CACHE_DIR"] = str(tmp_path_factory.mktemp("lucid-cache"))


@pytest.fixture
def seed_model() -> models.SeedModel:
    """The seed model with lucid.random.seed(0)'s weights (tests/models.py)."""
    return models.seed_model()


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


GOLDEN_DIR = Path(__file__).parent / "golden"


@pytest.fixture
def golden(update_goldens: bool):
    """golden(name, text): compare text with tests/golden/NAME, or rewrite it with --update-goldens."""

    def check(name: str, text: str) -> None:
        path = GOLDEN_DIR / name
        if update_goldens or not path.exists():
            if not update_goldens:
                pytest.fail(
                    f"golden file {path} is missing; run pytest --update-goldens and review it"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        expected = path.read_text()
        assert text == expected, (
            f"output differs from golden {path} (rerun with --update-goldens to accept)"
        )

    return check
