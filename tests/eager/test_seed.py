"""The three examples of the seed page (lucid.nn.HardSwish) run exactly as written.

data/seed_hardswish.txt is a verbatim copy of the seed document. Its printed outputs are
illustrative and wrong (NOTES.md); the values checked here are the correct ones.
"""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

import lucid

SEED = Path(__file__).parent / "data" / "seed_hardswish.txt"


def seed_blocks() -> list[str]:
    """The page's example code, one source string per example (each starts with an import)."""
    examples = doctest.DocTestParser().get_examples(SEED.read_text())
    blocks: list[list[str]] = []
    for ex in examples:
        if ex.source.startswith("import lucid.nn as nn"):
            blocks.append([])
        blocks[-1].append(ex.source)
    return ["".join(b) for b in blocks]


def run_block(i: int, capsys: pytest.CaptureFixture[str]) -> tuple[dict, list[str]]:
    """Exec example i as the page assumes (Tensor imported); returns its namespace and printout."""
    ns: dict = {"__name__": f"seed_example_{i}"}
    exec("from lucid import Tensor\n" + seed_blocks()[i], ns)  # noqa: S102 -- our own test data
    return ns, capsys.readouterr().out.splitlines()


def test_the_page_has_three_examples() -> None:
    blocks = seed_blocks()
    assert len(blocks) == 3
    assert all("backward()" in b for b in blocks)


def test_example_1_single_tensor(capsys: pytest.CaptureFixture[str]) -> None:
    ns, printed = run_block(0, capsys)
    out, x = ns["output"], ns["input_tensor"]
    np.testing.assert_allclose(out.data, [[-1 / 3, 5 / 3, -0.2083333, 3.0]], rtol=1e-6)
    # HardSwish' = x/3 + 1/2 on [-3, 3] inclusive: 3.0 gets 1.5, not 1.
    np.testing.assert_allclose(x.grad, [[1 / 6, 7 / 6, 1 / 3, 1.5]], rtol=1e-6)
    assert printed == [str(out.data), str(x.grad)]


def test_example_2_inside_a_module(capsys: pytest.CaptureFixture[str]) -> None:
    ns, printed = run_block(1, capsys)
    out, x = ns["output"], ns["input_data"]
    np.testing.assert_allclose(out.data, [[-1 / 3, 0.2916667, 1.125, -0.135]], rtol=1e-6)
    np.testing.assert_allclose(x.grad, [[-1 / 6, 2 / 3, 1.0, 0.4]], rtol=1e-6)
    assert printed == [str(out.data), str(x.grad)]


def test_example_3_linear_hardswish_linear(capsys: pytest.CaptureFixture[str]) -> None:
    lucid.random.seed(0)
    ns, printed = run_block(2, capsys)
    model, out, x = ns["model"], ns["output"], ns["input_data"]
    assert out.shape == (1, 2) and x.grad.shape == (1, 3)
    w1, b1 = model.fc1.weight.data.astype(np.float64), model.fc1.bias.data.astype(np.float64)
    w2, b2 = model.fc2.weight.data.astype(np.float64), model.fc2.bias.data.astype(np.float64)
    xd = np.array([[0.5, -1.2, 3.3]])
    h = xd @ w1.T + b1
    hardswish = h * np.clip(h / 6 + 0.5, 0, 1)  # the seed's definition, written out
    np.testing.assert_allclose(out.data, hardswish @ w2.T + b2, rtol=1e-5, atol=1e-6)
    slope = np.where(h < -3, 0.0, np.where(h > 3, 1.0, h / 3 + 0.5))  # NOTES.md's derivative
    grad = (slope * (np.ones((1, 2)) @ w2)) @ w1
    np.testing.assert_allclose(x.grad, grad, rtol=1e-5, atol=1e-6)
    assert [n for n, _ in model.named_parameters()] == [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
    ]
    assert printed[0] == str(out.data)


def test_eager_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import runpy

    script = Path(__file__).parents[2] / "examples" / "seed_eager.py"
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    mses = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("step")]
    assert len(mses) == 5 and mses[-1] < mses[0] / 2
