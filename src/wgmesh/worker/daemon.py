"""The worker daemon: one persistent MQTT session in, kernel changes out.

Three threads, each with its own module: paho's network thread (session.py) only validates and
queues; the apply thread (this loop) owns the kernel (changes.py, reconciler.py), the journal's
content and the timers; the committer thread (committer.py) writes the journal and then sends
the PUBACKs. A key is acknowledged only after it was tried in the kernel and its journal write
was attempted, so a key that arrives while the worker dies is delivered again by mosquitto
(docs/worker.md).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from wgmesh import protocol
from wgmesh.config import Config
from wgmesh.worker.changes import KernelChanges
from wgmesh.worker.committer import Committer
from wgmesh.worker.domains import domain_links
from wgmesh.worker.errors import KernelError
from wgmesh.worker.journal import Journal, JournalError
from wgmesh.worker.links import Links
from wgmesh.worker.metrics import WorkerMetrics
from wgmesh.worker.reconcile import StalePolicy
from wgmesh.worker.reconciler import Reconciler
from wgmesh.worker.report import Reporter
from wgmesh.worker.selector import BackendSelector
from wgmesh.worker.session import Connected, KeyEvent, Session

log = logging.getLogger(__name__)

MAX_BATCH = 5000  # keys applied together when they arrive in a burst
# The journal write (and with it the PUBACKs, which no node waits for) covers the keys of the
# last COMMIT_LINGER_S, and a steady stream still gets one every COMMIT_MAX_DELAY_S: one
# serialisation and fsync per group instead of per key (the journal grows with the mesh).
COMMIT_LINGER_S = 0.05
COMMIT_MAX_DELAY_S = 0.5


class Worker:
    def __init__(
        self,
        cfg: Config,
        selector: BackendSelector | None = None,
        links: Links | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = cfg
        self.name = cfg.worker.name
        self.domains = {d.domain: d for d in domain_links(cfg)}
        self.clock = clock
        self.static = frozenset(cfg.worker.static_peers)
        self.metrics = WorkerMetrics()
        self.journal = Journal(cfg.worker.journal)
        self.metrics.journal_set_aside.inc(self.journal.entries_set_aside)
        self.events: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.session = Session(cfg, self.domains, self.metrics, self.events, self.stopping)
        self.committer = Committer(self.journal.path, self.metrics, self.session.ack)
        self.changes = KernelChanges(
            selector or BackendSelector(cfg.worker.backend), links or Links(), self.journal, self.metrics
        )
        policy = StalePolicy(cfg.worker.stale_after, cfg.worker.grace_period)
        self.reconciler = Reconciler(
            self.changes, self.journal, self.metrics, policy, self.static, clock, cfg.worker.ha_state_file
        )
        self.reporter = Reporter(
            self.name, cfg.external_name or self.name, self.changes, self.metrics, self.session.publish, clock
        )
        self._unacked: list[KeyEvent] = []  # applied, waiting for the journal write
        self._unacked_since = 0.0

    def health(self) -> str | None:
        """What keeps the worker from being fully healthy (for /health), or None."""
        return self.committer.problem

    # --- the apply thread -------------------------------------------------------
    def run(self) -> None:
        if self.cfg.worker.metrics_listen:
            host, port = self.cfg.worker.metrics_listen
            self.metrics.serve(host, port, self.health)
            log.info("metrics on http://%s:%d/metrics, health on /health", host, port)
        self.committer.start()  # first: the first reconcile's journal write goes through it (retries)
        self.reconcile_all()  # serve known nodes at once, before MQTT is even up
        self.session.start()
        next_metrics = next_reconcile = time.monotonic()
        next_reconcile += self.cfg.worker.reconcile_interval
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                if now >= next_metrics:
                    self.publish_metrics()
                    next_metrics = now + protocol.METRICS_INTERVAL_S
                if now >= next_reconcile:
                    self.reconcile_all()
                    next_reconcile = now + self.cfg.worker.reconcile_interval
                timeout = max(0.0, min(next_metrics, next_reconcile) - time.monotonic())
                if self._unacked:  # keys wait for their journal write: linger briefly for more
                    timeout = max(0.0, self._unacked_since + COMMIT_LINGER_S - time.monotonic())
                try:
                    first = self.events.get(timeout=min(timeout, 1.0))
                except queue.Empty:
                    self.commit()
                    continue
                self._handle([first, *self.drain()])
                if self._unacked and time.monotonic() - self._unacked_since >= COMMIT_MAX_DELAY_S:
                    self.commit()
        finally:
            self._shutdown()

    def stop(self) -> None:
        self.stopping.set()
        self.events.put(None)

    def drain(self) -> list:
        out = []
        while len(out) < MAX_BATCH:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                break
        return out

    def _handle(self, events: list) -> None:
        keys = [e for e in events if isinstance(e, KeyEvent)]
        if keys:
            self.apply_keys(keys)
        for event in events:
            if isinstance(event, Connected) and event.generation == self.session.generation:
                self.reconcile_all()
                self.publish_data()
                self.publish_metrics()

    def _shutdown(self) -> None:
        self.commit()
        self.committer.stop()
        self.session.close()
        self.changes.links.close()

    # --- keys -------------------------------------------------------------------
    def apply_keys(self, events: list[KeyEvent]) -> None:
        """Kernel first (the node waits for it); the journal write and the acknowledgement follow
        in commit(), once no more keys are queued (one fsync for a burst). A crash before the
        commit leaves the keys unacknowledged, so mosquitto delivers them again."""
        started = time.perf_counter()
        now = self.clock()
        by_domain: dict[str, list[str]] = {}
        for event in events:
            self.journal.add(event.domain, event.key, now)
            self.metrics.keys_received.labels(event.domain).inc()
            if event.key in self.static:
                log.warning("domain %s: key %s is a static peer; left alone", event.domain, event.key)
                continue
            by_domain.setdefault(event.domain, []).append(event.key)
        for domain, keys in by_domain.items():
            dom = self.domains[domain]
            try:
                self.changes.add(dom, list(dict.fromkeys(keys)), now)
            except KernelError as exc:  # the keys are in the journal: reconcile puts them in
                self.changes.failed(dom, f"adding {len(keys)} keys", exc)
        done = time.monotonic()
        for event in events:
            self.metrics.key_seconds.observe(done - event.received)
        if not self._unacked:
            self._unacked_since = time.monotonic()
        self._unacked.extend(events)
        self.metrics.apply_seconds.observe(time.perf_counter() - started)

    def commit(self) -> None:
        """Hand the journal's content and the keys it holds to the committer thread, which
        writes it and then acknowledges them, while this thread goes on applying keys."""
        if not self._unacked:
            return
        pending, self._unacked = self._unacked, []
        self.committer.submit(self.journal.snapshot(), pending)

    # --- reconcile and what the broker reads --------------------------------------
    def reconcile_all(self) -> None:
        self.reconciler.reconcile_all(self.domains.values())
        if self.committer.alive:
            if self.journal.dirty:  # through the committer, so writes stay in order
                self.committer.submit(self.journal.snapshot(), [])
        else:
            try:
                self.journal.save()
            except JournalError as exc:
                log.error("%s", exc)

    def publish_metrics(self) -> None:
        self.reporter.publish_metrics(self.domains.values())

    def publish_data(self) -> None:
        self.reporter.publish_data(self.domains.values())
