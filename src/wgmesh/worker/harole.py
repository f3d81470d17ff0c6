"""Which role this member of an HA pair has now, for the worker's MQTT side (docs/ha.md,
"One gateway to the broker").

`wgmesh-ha` replaces the state file atomically on every promotion and demotion. A thread
stats it every POLL_S (a cheap syscall; inotify would need a package and gains little at
this rate) and reads it only when its inode, size or mtime changed, so a promotion reaches
the broker as status "1" within about POLL_S. A missing or unreadable file counts as standby,
as for the stale-peer cleanup (wgmesh.ha.state).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from wgmesh.ha import state

log = logging.getLogger(__name__)

POLL_S = 0.5


class HaRole:
    def __init__(self, path: str, on_change: Callable[[bool], None]):
        self.path = path
        self.on_change = on_change  # called from the watch thread with the new `active`
        self._seen: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self.active = state.active_since(path) is not None
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def check(self) -> None:
        """Read the file again if it changed; call on_change when the role did."""
        stamp = self._stamp()
        if stamp == self._seen:
            return
        self._seen = stamp
        active = state.active_since(self.path) is not None
        if active != self.active:
            self.active = active
            log.info("HA: this member is now %s (%s)", state.ACTIVE if active else state.STANDBY, self.path)
            self.on_change(active)

    def start(self) -> None:
        log.info("HA: this member is %s (%s)", state.ACTIVE if self.active else state.STANDBY, self.path)
        threading.Thread(target=self._watch, name="ha-role", daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.check()
            except Exception:  # the watch must outlive one bad callback
                log.exception("HA: checking %s failed", self.path)

    def stop(self) -> None:
        self._stop.set()
