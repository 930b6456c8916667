"""Every issue-15 kernel built with AddressSanitizer and UndefinedBehaviorSanitizer and run,
compiled and exported, forward and backward, against eager lucid (tests/sanitizer/_san.py
says how; cases.py lists the cases). Slow: instrumented builds, in a child Python each."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sanitizer import _san

pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs_cc,
    pytest.mark.skipif(_san.missing() is not None, reason=str(_san.missing())),
]

GROUPS = {
    # conv: im2col + GEMM, depthwise, 1x1, Conv1d, 2 threads; pool: every pooling and padding
    # kernel and its gradient; norm: BatchNorm train/eval with write-back, LayerNorm, GroupNorm
    "vision": ["conv", "pool", "norm"],
    # embedding and out-of-range indices, batched matmul 3-D/4-D, softmax/log_softmax, SDPA
    # (causal and masks), MultiheadAttention, TransformerEncoderLayer (dropout), CE and NLL
    "sequence": ["embedding", "bmm", "softmax", "sdpa", "mha", "encoder", "losses"],
    "mobilenet": ["mobilenet"],
    "gpt": ["gpt"],
    # lucid.export libraries from the C caller (two threads) and the Python loader
    "exports": ["exports"],
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compile cache for the children: a program two cases build is built once."""
    return tmp_path_factory.mktemp("sanitized-cache")


@pytest.mark.parametrize("group", list(GROUPS))
def test_kernels_are_clean_under_asan_and_ubsan(group: str, cache_dir: Path) -> None:
    out = _san.run_cases(GROUPS[group], cache_dir)
    print(out)  # per case: what ran and how long it took (pytest -s shows it)


@pytest.mark.parametrize(
    ("canary", "report"),
    [
        ("canary_heap", "ERROR: AddressSanitizer: heap-buffer-overflow"),
        ("canary_overflow", "runtime error: signed integer overflow"),
    ],
)
def test_the_harness_reports_a_planted_bug(canary: str, report: str, cache_dir: Path) -> None:
    """A C function with an out-of-bounds read, and one with a signed overflow, built and run
    the way the kernels are: the child must stop with the sanitizer's report, so a clean run
    above means clean kernels, not a blind harness."""
    run = _san.child([canary], cache_dir, timeout=120)
    assert run.returncode != 0, run.stdout
    assert report in run.stderr, run.stderr[-3000:]
    assert f"sanitized {canary}: ok" not in run.stdout
