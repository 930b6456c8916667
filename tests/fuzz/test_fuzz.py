"""Random models: compiled (static and dynamic batch) and the IR interpreter against eager.

The quick profile (default) runs in every CI run: a fixed, derandomized set of examples that
stops at the first finding and lets hypothesis shrink it to a small reproducer. `LUCID_FUZZ=long`
selects the long profile: hundreds of fresh random examples (`--hypothesis-seed=N` repeats a
run) that all run to the end, so the session summary counts every mismatch and crash.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.check import FINDINGS, TALLY, check
from tests.fuzz.generate import Program, programs

_COMMON = {
    "deadline": None,  # a first call compiles C: seconds, not milliseconds
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "database": None,  # CI runs are reproducible from the code alone
}
settings.register_profile("fuzz-quick", max_examples=20, derandomize=True, **_COMMON)
settings.register_profile("fuzz-long", max_examples=600, **_COMMON)
PROFILE = os.environ.get("LUCID_FUZZ", "quick")
if PROFILE not in ("quick", "long"):
    raise ValueError(f"LUCID_FUZZ must be 'quick' or 'long', got {PROFILE!r}")


@pytest.mark.slow  # ~40 s: CI runs it (CI runs every test); `-m "not slow"` stays under a minute
@pytest.mark.needs_cc
@settings(settings.get_profile(f"fuzz-{PROFILE}"))
@given(program=programs())
def test_compiled_and_interpreted_models_match_eager(program: Program) -> None:
    outcome = check(program)
    TALLY[outcome.kind] += 1
    if outcome.kind == "ok":
        return
    FINDINGS.append(outcome.report)
    if PROFILE == "quick":
        pytest.fail(outcome.report, pytrace=False)


@pytest.mark.slow
@pytest.mark.needs_cc
def test_long_profile_found_nothing() -> None:
    """The long profile's findings, reported after every example ran (quick ones fail above)."""
    if FINDINGS:
        listed = "\n\n".join(FINDINGS)
        pytest.fail(f"{len(FINDINGS)} finding(s):\n\n{listed}", pytrace=False)
