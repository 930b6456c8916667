"""lucid's log records and how to see them.

Everything lucid reports goes to the `lucid` logger (`logging.getLogger("lucid")`):
    DEBUG    trace (nodes, guards), each pass (nodes before -> after, time), codegen (kernels,
             bytes of C, time), cache hits and misses
    INFO     builds (module, seconds, the compiler command), recompiles, eager fallbacks
    WARNING  damaged cache artifacts rebuilt, an unusable cache replaced, files not written
Nothing is printed by default except Python warnings (RecompileWarning, FallbackWarning,
CacheWarning). `lucid.set_log_level("info")` or the environment variable LUCID_LOG=info
(read at `import lucid`) prints the records at that level and above on stderr.
"""

from __future__ import annotations

import logging

__all__ = ["set_log_level"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_handler: logging.Handler | None = None


def set_log_level(level: str | int | None) -> None:
    """Print lucid's log records at `level` and above on stderr ("debug", "info", "warning",
    or a logging level number); None stops printing them."""
    global _handler
    logger = logging.getLogger("lucid")
    if level is None:
        if _handler is not None:
            logger.removeHandler(_handler)
            _handler = None
        logger.setLevel(logging.NOTSET)
        return
    if isinstance(level, str):
        if level.lower() not in _LEVELS:
            raise ValueError(
                f"set_log_level: expected one of {', '.join(_LEVELS)} or a number, got {level!r}"
            )
        level = _LEVELS[level.lower()]
    elif isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"set_log_level: expected a level name or number, got {level!r}")
    if _handler is None:
        _handler = logging.StreamHandler()
        _handler.setFormatter(logging.Formatter("lucid %(levelname)s: %(message)s"))
        logger.addHandler(_handler)
    logger.setLevel(level)
