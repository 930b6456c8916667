"""options={"background": True}: no call waits for the C compiler. A new signature's calls run
eagerly while its C builds on a thread; the compiled program takes over when it is ready, with
results equal within float32 tolerance; a failed build is raised by a later call (issue 17)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.errors import BuildError
from tests.models import hardswish_mlp, normal_rows

pytestmark = pytest.mark.needs_cc


def _model() -> nn.Module:
    return hardswish_mlp((8, 32, 3), seed=4)


def _x(rows: int = 6) -> np.ndarray:
    return normal_rows(rows, 8, seed=4)


def test_calls_run_eagerly_until_the_build_is_done_then_compiled() -> None:
    model = _model().eval()
    compiled = lucid.compile(model, options={"background": True})
    start = time.perf_counter()
    first = compiled(_x())
    took = time.perf_counter() - start
    assert compiled.signatures == []  # answered before the build ended
    assert compiled.wait(timeout=300)
    assert len(compiled.signatures) == 1 and took < compiled.build_info.seconds
    again = compiled(_x())
    with lucid.no_grad():
        want = model(lucid.Tensor(_x())).data
    np.testing.assert_allclose(first.data, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(again.data, want, rtol=1e-5, atol=1e-5)


def test_training_steps_work_before_and_after_the_build() -> None:
    model = _model().train()
    eager_model = _model().train()
    compiled = lucid.compile(model, options={"background": True})
    x = lucid.Tensor(_x())
    for step in range(2):
        if step == 1:
            assert compiled.wait(timeout=300) and compiled.entry().grad is not None
        for m in (model, eager_model):
            m.zero_grad()
        compiled(x).sum().backward()
        eager_model(x).sum().backward()
        for p, q in zip(model.parameters(), eager_model.parameters()):
            np.testing.assert_allclose(p.grad, q.grad, rtol=1e-5, atol=1e-5)


def test_a_failed_background_build_is_raised_by_a_later_call() -> None:
    compiled = lucid.compile(
        _model().eval(), options={"background": True, "cflags": ["-fno-such-flag-lucid"]}
    )
    compiled(_x())  # eager, while the build fails on its thread
    compiled.wait(timeout=300)
    with pytest.raises(BuildError, match="fno-such-flag-lucid"):
        compiled(_x())


def test_background_contradicts_fullgraph() -> None:
    with pytest.raises(ValueError, match="contradict"):
        lucid.compile(_model(), options={"background": True, "fullgraph": True})


PROGRESS = """
import sys
from lucid.runtime.build import build, BuildOptions
build(sys.argv[1], "int probe(int x);", cache_dir=sys.argv[2], options=BuildOptions(cc=sys.argv[3]))
"""


def test_a_long_build_shows_progress_on_a_terminal_and_nothing_on_a_pipe(tmp_path: Path) -> None:
    """A build slowed to about 2.5 s, with stderr a pseudo-terminal, then a pipe."""
    slow = tmp_path / "slowcc"
    slow.write_text('#!/bin/sh\ncase "$*" in *-o*) sleep 2.5;; esac\nexec cc "$@"\n')
    slow.chmod(0o755)
    outputs = []
    for terminal in (True, False):
        source = f"/* {uuid.uuid4().hex} */ int probe(int x) {{ return x; }}"
        args = [sys.executable, "-c", PROGRESS, source, str(tmp_path / "c"), str(slow)]
        if terminal:
            leader, follower = pty.openpty()
            proc = subprocess.Popen(args, stderr=follower)
            os.close(follower)
            chunks = []
            while True:
                try:
                    data = os.read(leader, 1024)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            proc.wait(timeout=60)
            os.close(leader)
            outputs.append(b"".join(chunks).decode(errors="replace"))
        else:
            run = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
            outputs.append(run.stderr)
    assert "lucid: compiling _lucid_" in outputs[0] and "\x1b[K" in outputs[0]
    assert outputs[1] == ""
