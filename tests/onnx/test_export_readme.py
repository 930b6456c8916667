"""The README's ONNX snippet: the test holds its lines (a change to either shows here) and makes
the same calls, then checks that images of another batch size go through the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import lucid

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

README = Path(__file__).parents[2] / "README.md"
SNIPPET = [
    "import lucid, onnxruntime",
    "from lucid.models import mobilenet_v3_small",
    'lucid.onnx.export(mobilenet_v3_small().eval(), lucid.randn(2, 3, 224, 224), "mnv3.onnx")',
    'logits, = onnxruntime.InferenceSession("mnv3.onnx").run(None, {"input_0": images})  # any batch',
]


def test_readme_onnx_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section = README.read_text().split("\n## ONNX\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.split("```python\n", 1)[1].split("```")[0].splitlines() if ln]
    assert lines == SNIPPET
    monkeypatch.chdir(tmp_path)
    from lucid.models import mobilenet_v3_small

    lucid.random.seed(0)
    model = mobilenet_v3_small().eval()
    lucid.onnx.export(model, lucid.randn(2, 3, 224, 224), "mnv3.onnx")
    images = np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)
    (logits,) = onnxruntime.InferenceSession("mnv3.onnx").run(None, {"input_0": images})
    assert logits.shape == (3, 1000) and os.path.exists(tmp_path / "mnv3.onnx")
    want = model(lucid.Tensor(images)).data
    np.testing.assert_allclose(logits, want, rtol=1e-3, atol=2e-4 * float(np.abs(want).max()))
