"""The fuzz session's counts, printed at the end of the run (see tests/fuzz/test_fuzz.py)."""

from __future__ import annotations

import pytest

from tests.fuzz.check import OUTCOMES, SKIPPED, TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line: examples run and each outcome (shrinking steps count as examples)."""
    if not TALLY:
        return
    counts = ", ".join(f"{TALLY[k]} {k}" for k in OUTCOMES)
    terminalreporter.write_line(f"fuzz: {sum(TALLY.values())} examples: {counts}")
    for reason, n in sorted(SKIPPED.items()):
        terminalreporter.write_line(f"fuzz: {n} examples skipped {reason}")
