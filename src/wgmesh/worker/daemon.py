"""The worker daemon: one persistent MQTT session in, kernel changes out.

Four threads, each with its own module: paho's network thread (session.py) and the link watch
(linkwatch.py) only validate and queue; the apply thread (this loop) owns the kernel
(changes.py, reconciler.py), the journal's content and the timers; the committer thread
(committer.py) writes the journal and then sends the PUBACKs. A key is acknowledged only
after it was tried in the kernel and its journal write was attempted, so a key that arrives
while the worker dies is delivered again by mosquitto (docs/worker.md).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from wgmesh import protocol, sdnotify
from wgmesh.config import Config
from wgmesh.ha.sync import PartnerPeers
from wgmesh.worker.changes import KernelChanges
from wgmesh.worker.committer import Committer
from wgmesh.worker.domains import DomainLinks, domain_links
from wgmesh.worker.errors import KernelError
from wgmesh.worker.harole import HaRole
from wgmesh.worker.hasync import HA_SYNC_INTERVAL_S, HaSync
from wgmesh.worker.journal import Journal, JournalError
from wgmesh.worker.links import Links
from wgmesh.worker.linkwatch import LinkChanged, LinkWatcher
from wgmesh.worker.metrics import WorkerMetrics
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
# networkd makes a link in steps (create, MTU, up, stacked links): one reconcile of the domain
# this long after the first event of a recreated link covers them.
LINK_SETTLE_S = 0.2


@dataclass(frozen=True)
class RoleChanged:
    """This HA member became active (the pair's data, metrics and sync come from it now) or standby."""

    active: bool


@dataclass(frozen=True)
class Reload:
    """SIGHUP: reconcile every domain now (wgmesh-worker --drift says what that would change)."""


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
        self.metrics = WorkerMetrics()
        self.journal = Journal(cfg.worker.journal)
        self.metrics.journal_set_aside.inc(self.journal.entries_set_aside)
        # SimpleQueue: its put() is reentrant, so the signal handlers may queue (Queue.put could
        # deadlock when a signal arrives while the apply thread holds the queue's lock).
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.ha_role = HaRole(cfg.worker.ha_state_file, self._on_role) if cfg.worker.ha_state_file else None
        self.session = Session(cfg, self.domains, self.metrics, self.events, self.stopping, self.ha_role)
        self.committer = Committer(self.journal.path, self.metrics, self.session.ack)
        self.changes = KernelChanges(
            selector or BackendSelector(cfg.worker.backend), links or Links(), self.journal, self.metrics
        )
        self.reconciler = Reconciler.for_config(cfg.worker, self.changes, self.metrics, clock)
        self.reporter = Reporter(
            self.name, cfg.external_name or self.name, self.changes, self.metrics, self.session.publish, clock
        )
        self.ha_sync = None
        if self.ha_role is not None:
            self.ha_sync = HaSync(
                self.name,
                self.session.client_id,
                self.domains,
                self.changes,
                self.reconciler.static,
                cfg.worker.ha_endpoints_file,
                cfg.worker.ha_synced_file,
                self.session.publish,
                clock,
            )
        self._unacked: list[KeyEvent] = []  # applied, waiting for the journal write
        self._unacked_since = 0.0
        self.link_watcher = LinkWatcher(self.domains.values(), self.events)
        self._relink_due: dict[str, float] = {}  # domain -> when to reconcile it for a new link

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
        self.link_watcher.start()  # before the first reconcile: a link made in between is seen
        self.reconcile_all()  # serve known nodes at once, before MQTT is even up
        if self.ha_role is not None:
            self.ha_role.start()
        self.session.start()
        # Type=notify: `systemctl restart` returns, and a reload may come, only now that the
        # signal handlers are set (main() sets them before run()) and known nodes are served.
        sdnotify.notify("READY=1")
        next_metrics = next_reconcile = next_sync = time.monotonic()
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
                if self.ha_sync is not None and now >= next_sync:
                    if self.ha_role.active:
                        self.ha_sync.send_changes()
                    next_sync = now + HA_SYNC_INTERVAL_S
                self.reconcile_relinked(now)
                due = [next_metrics, next_reconcile, *self._relink_due.values()]
                if self.ha_sync is not None:
                    due.append(next_sync)
                timeout = max(0.0, min(due) - time.monotonic())
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

    def _on_role(self, active: bool) -> None:
        """From the HA role's watch thread: on promotion say online at once (paho's publish is
        thread-safe); data and metrics need the kernel, so the apply thread sends them."""
        if active:
            self.session.say_online()
        self.events.put(RoleChanged(active))

    def reload(self) -> None:
        """From the SIGHUP handler: the apply thread reconciles every domain at once."""
        self.events.put(Reload())

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
        if any(isinstance(e, Reload) for e in events):  # several signals in a burst: one reconcile
            log.info("SIGHUP: reconciling every domain now")
            for dom in self.domains.values():
                self.changes.selector.forget(dom.wg)  # chosen anew, as for a recreated link
            self.reconcile_all()
        roles = [e for e in events if isinstance(e, RoleChanged)]
        if roles:
            self.ha_sync.forget_sent()
            if roles[-1].active:
                self.publish_data()
                self.publish_metrics()
                self.ha_sync.send_changes()
        partner = [e for e in events if isinstance(e, PartnerPeers)]
        if partner:
            self.ha_sync.hear(partner)
        demoted = roles and not roles[-1].active
        if (partner or demoted) and not self.ha_role.active:  # an active member follows nobody
            self.ha_sync.follow_heard()
            self.save_journal()
        for event in events:
            if isinstance(event, LinkChanged):
                self._relink_due.setdefault(event.domain, time.monotonic() + LINK_SETTLE_S)
            if isinstance(event, Connected) and event.generation == self.session.generation:
                self.reconcile_all()
                self.publish_data()
                self.publish_metrics()

    def _shutdown(self) -> None:
        self.commit()
        self.committer.stop()
        if self.ha_role is not None:
            self.ha_role.stop()
        self.session.close()
        self.link_watcher.close()
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
            if event.key in self.reconciler.static:
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
    def reconcile_relinked(self, now: float) -> None:
        """Reconcile the domains whose wg- or vx- link was recreated (linkwatch.py), now that
        the link has settled: its peers, routes or FDB entries went with the old link."""
        due = [domain for domain, when in self._relink_due.items() if when <= now]
        for domain in due:
            del self._relink_due[domain]
            self.changes.selector.forget(self.domains[domain].wg)  # it may be of another kind now
        if due:
            log.info("reconciling %s for their recreated links", ", ".join(sorted(due)))
            self.reconcile_all([self.domains[domain] for domain in due])

    def reconcile_all(self, domains: list[DomainLinks] | None = None) -> None:
        self.reconciler.reconcile_all(self.domains.values() if domains is None else domains)
        self.save_journal()

    def save_journal(self) -> None:
        """Write the journal if it changed outside the key path (reconcile, the HA sync)."""
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
