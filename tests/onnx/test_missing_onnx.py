"""Without the optional onnx package, lucid.onnx says how to install it, as a
ModuleNotFoundError naming "onnx" (what code that skips a missing optional package looks for;
the README test skips such blocks by it)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid import nn


@pytest.fixture
def no_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now fails


@pytest.mark.usefixtures("no_onnx")
def test_load_without_onnx_names_the_package_and_the_install() -> None:
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'lucid\[onnx\]'") as err:
        lucid.onnx.load("model.onnx")
    assert err.value.name == "onnx"


@pytest.mark.usefixtures("no_onnx")
def test_export_without_onnx_names_the_package_and_the_install(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'lucid\[onnx\]'") as err:
        lucid.onnx.export(model, (np.ones((1, 3), np.float32),), tmp_path / "m.onnx")
    assert err.value.name == "onnx"
    assert not (tmp_path / "m.onnx").exists()
