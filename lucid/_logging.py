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

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

__all__ = ["log", "set_log_level"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30}  # logging.DEBUG, INFO, WARNING
_handler: logging.Handler | None = None


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("lucid")


class _Log:
    """What lucid's modules log through: the `lucid` logger's debug, info and warning, with
    `logging` imported only when a record can be seen. Until something imports `logging`, no
    handler or level can have been set up, and Python's last-resort handler prints WARNING and
    above only: a DEBUG or INFO record is dropped either way, so it is dropped here without the
    import (logging and what it pulls in were ~4 ms of a ~20 ms warm start). A WARNING always
    goes through `logging`, as before."""

    __slots__ = ()

    def debug(self, msg: str, *args: object) -> None:
        if "logging" in sys.modules:
            _logger().debug(msg, *args, stacklevel=2)

    def info(self, msg: str, *args: object) -> None:
        if "logging" in sys.modules:
            _logger().info(msg, *args, stacklevel=2)

    def warning(self, msg: str, *args: object) -> None:
        _logger().warning(msg, *args, stacklevel=2)


log = _Log()


def set_log_level(level: str | int | None) -> None:
    """Print lucid's log records at `level` and above on stderr ("debug", "info", "warning",
    or a logging level number); None stops printing them."""
    import logging

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
