"""`python -m lucid`: the same tool as the `lucid-ir` command."""

from __future__ import annotations

import sys

from lucid.cli import main

if __name__ == "__main__":
    sys.exit(main())
