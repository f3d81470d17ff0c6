"""Repeated log lines are rate-limited: a flood of one message must not fill the disk.

Seen: asyncio's "socket.accept() out of system resource" grew the log by 14 MB
in 100 s while the process was out of file descriptors.
"""

from __future__ import annotations

import logging

import pytest

from wgmesh.config import setup_logging
from wgmesh.logfilter import RepeatFilter


def record(msg: str, *args, name: str = "asyncio", level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_repeated_message_passes_burst_times_per_window_then_reports_the_rest():
    now = [0.0]
    flt = RepeatFilter(burst=3, window=60, clock=lambda: now[0])
    passed = [flt.filter(record("accept failed: %s", i)) for i in range(100)]
    assert passed.count(True) == 3
    assert flt.filter(record("something else")) is True  # other messages are not held back
    now[0] = 61.0
    late = record("accept failed: %s", 100)
    assert flt.filter(late) is True
    assert "97 more like this" in late.getMessage()
    assert late.getMessage().startswith("accept failed: 100")


def test_the_filter_keeps_a_bounded_memory():
    flt = RepeatFilter(burst=1, window=60, clock=lambda: 0.0)
    for i in range(50_000):
        flt.filter(record(f"distinct message {i}"))
    assert len(flt.seen) <= RepeatFilter.MAX_KEYS


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:], root.level = saved


def test_setup_logging_rate_limits_every_handler(config_factory, capsys, root_logging):
    cfg = config_factory(
        logging_config={
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
            "root": {"handlers": ["stderr"], "level": "INFO"},
        }
    )
    setup_logging(cfg)
    for _line in range(1000):
        logging.getLogger("asyncio").error("socket.accept() out of system resource\nsocket: %s", "<sock>")
    lines = [line for line in capsys.readouterr().err.splitlines() if "socket.accept()" in line]
    assert 1 <= len(lines) <= 10
