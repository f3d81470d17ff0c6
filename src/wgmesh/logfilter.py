"""Rate limit for repeated log lines: one message cannot flood the log.

Keyed by logger, level and the unformatted message, so "accept failed: %s"
with ever-new arguments counts as one line. Each key passes `burst` times per
`window`; the first line after the window says how many were held back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RepeatFilter(logging.Filter):
    MAX_KEYS = 1000  # distinct messages remembered; a flood of distinct ones resets the memory

    def __init__(self, burst: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.burst = burst
        self.window = window
        self.clock = clock
        self.seen: dict[tuple[str, int, str], tuple[float, int, int]] = {}  # key -> (start, passed, held)

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        start, passed, held = self.seen.get(key, (now, 0, 0))
        if now - start >= self.window:
            if held:
                record.msg = f"{record.msg} [{held} more like this in the last {self.window:g}s not logged]"
            start, passed, held = now, 0, 0
        if len(self.seen) >= self.MAX_KEYS and key not in self.seen:
            self.seen.clear()
        if passed < self.burst:
            self.seen[key] = (start, passed + 1, held)
            return True
        self.seen[key] = (start, passed, held + 1)
        return False


def install(logger: logging.Logger | None = None) -> RepeatFilter:
    """One shared filter on every handler of `logger` (default: root), where all records end up."""
    flt = RepeatFilter()
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(flt)
    return flt
