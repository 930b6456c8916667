"""`python -m tests.fuzz [pytest args]`: the long fuzz profile, with its counts at the end."""

from __future__ import annotations

import os
import sys

import pytest

if __name__ == "__main__":
    os.environ.setdefault("LUCID_FUZZ", "long")
    here = os.path.dirname(os.path.abspath(__file__))
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", here, *sys.argv[1:]]))
