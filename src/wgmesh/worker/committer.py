"""The committer thread: writes the journal, then acknowledges the keys it holds.

One write (and fsync: 7-40 ms) covers every key handed over meanwhile; only the newest
content matters, since each is the whole journal. A failed write (disk full, read-only) must
not stall the worker: the keys are in the kernel and in memory, so they are acknowledged
anyway (else mosquitto's in-flight window fills and no key arrives any more), counted in
/metrics, reported in /health, and the write is retried until the disk takes it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from wgmesh.worker.journal import JournalError, write_atomic
from wgmesh.worker.metrics import WorkerMetrics
from wgmesh.worker.session import KeyEvent

log = logging.getLogger(__name__)

RETRY_S = 1.0  # while the disk refuses the journal: how often to try again


class Committer:
    def __init__(self, path: str, metrics: WorkerMetrics, ack: Callable[[list[KeyEvent]], None]):
        self.path = path
        self.metrics = metrics
        self.ack = ack
        self.problem: str | None = None  # set while the disk refuses writes (for /health)
        self._queue: queue.Queue = queue.Queue()  # (journal bytes, keys) or None to stop
        self._thread = threading.Thread(target=self._run, name="journal", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def submit(self, data: bytes, keys: list[KeyEvent]) -> None:
        self._queue.put((data, keys))

    def stop(self) -> None:
        """Write what was submitted, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _next(self, unwritten: bytes | None):
        """The newest content and all keys it covers; None to stop. While a write is pending
        a retry, wait at most RETRY_S and retry it when nothing newer came."""
        try:
            item = self._queue.get(timeout=RETRY_S if unwritten is not None else None)
        except queue.Empty:
            return unwritten, []
        if item is None:
            return None
        data, keys = item
        while True:
            try:
                newer = self._queue.get_nowait()
            except queue.Empty:
                return data, keys
            if newer is None:
                self._queue.put(None)  # stop after this write
                return data, keys
            data, keys = newer[0], keys + newer[1]

    def _run(self) -> None:
        unwritten: bytes | None = None  # newest content the disk refused
        held = 0  # keys acknowledged since the last successful write
        while (item := self._next(unwritten)) is not None:
            data, keys = item
            try:
                write_atomic(self.path, data)
            except JournalError as exc:
                if unwritten is None:
                    log.error("%s; keys are applied and acknowledged but held in memory only; retrying", exc)
                unwritten, held = data, held + len(keys)
                self.problem = f"{exc}; {held} keys held in memory only"
            else:
                if unwritten is not None:
                    log.warning("journal %s written again; the %d keys held in memory are on disk", self.path, held)
                unwritten, held, self.problem = None, 0, None
            self.metrics.journal_unwritten.set(held)
            self.ack(keys)  # reconcile retries what failed in the kernel
        if unwritten is not None:
            log.error(
                "journal %s still cannot be written at shutdown; %d keys applied since are in the kernel "
                "but not on disk (their nodes register again after a reboot)",
                self.path,
                held,
            )
