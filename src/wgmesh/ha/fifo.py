"""keepalived's notify FIFO: state changes as lines, read by one long-running process.

keepalived (`notify_fifo FILE` + `notify_fifo_script CMD`) starts CMD once with the FIFO's path
as its last argument and writes a line per state change:

    INSTANCE "VI_welt" MASTER 150
    GROUP "gw1" BACKUP 0

A process that is already running reacts at once; a notify_master script would first start
Python and import its libraries (about 0.9 s on a loaded 2-core host, measured with
bench/ha_failover.py), and every node waits that long longer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

_LINE = re.compile(r'^(INSTANCE|GROUP) "([^"]*)" (\w+) (\d+)$')
ACTIVE = "MASTER"
INACTIVE = frozenset({"BACKUP", "FAULT", "STOP", "DELETED"})


@dataclass(frozen=True)
class Event:
    kind: str  # INSTANCE or GROUP
    name: str
    state: str
    priority: int


def parse_event(line: str) -> Event | None:
    """One FIFO line; None for lines of other kinds (keepalived also reports checkers there)."""
    match = _LINE.match(line.strip())
    if match is None:
        return None
    kind, name, state, priority = match.groups()
    return Event(kind, name, state, int(priority))


def serve(path: str, name: str, handle: Callable[[str], None]) -> None:
    """Call handle("MASTER" | "BACKUP" | ...) for each change of instance or group `name`.
    The FIFO is opened again when keepalived closes it (a reload)."""
    while True:
        with open(path, encoding="utf-8", errors="replace") as fifo:
            for line in fifo:
                event = parse_event(line)
                if event is None or event.name != name:
                    continue
                if event.state == ACTIVE or event.state in INACTIVE:
                    handle(event.state)
                else:
                    log.info("%s %s: state %s, nothing to do", event.kind, name, event.state)
