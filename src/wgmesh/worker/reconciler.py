"""Reconcile: make each domain's kernel state match the journal (decisions in reconcile.py).

Runs on start (before MQTT is up), on every reconnect and every `reconcile_interval`; a
kernel-side failure in one domain is handled there and never stops the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from wgmesh.config import WorkerConfig
from wgmesh.ha import state
from wgmesh.worker.backend import InterfaceMissing, Peer
from wgmesh.worker.changes import KernelChanges, lladdr
from wgmesh.worker.domains import DomainLinks
from wgmesh.worker.errors import KernelError
from wgmesh.worker.journal import Journal
from wgmesh.worker.metrics import WorkerMetrics
from wgmesh.worker.reconcile import Plan, StalePolicy, plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Survey:
    """One domain as the kernel holds it, and what plan() makes of it."""

    plan: Plan
    peers: Mapping[str, Peer]
    now: float
    wg_index: int
    vx_index: int | None  # None: no VXLAN device, so no FDB entries are planned


class Reconciler:
    def __init__(
        self,
        changes: KernelChanges,
        journal: Journal,
        metrics: WorkerMetrics,
        policy: StalePolicy,
        static: frozenset[str],
        clock: Callable[[], float],
        ha_state_file: str | None = None,
    ):
        self.changes = changes
        self.journal = journal
        self.metrics = metrics
        self.policy = policy
        self.static = static
        self.clock = clock
        self.ha_state_file = ha_state_file

    @classmethod
    def for_config(
        cls, cfg: WorkerConfig, changes: KernelChanges, metrics: WorkerMetrics, clock: Callable[[], float]
    ) -> Reconciler:
        """The reconcile settings of the worker's config, in one place (the daemon and --drift)."""
        policy = StalePolicy(cfg.stale_after, cfg.grace_period)
        static = frozenset(cfg.static_peers)
        return cls(changes, changes.journal, metrics, policy, static, clock, cfg.ha_state_file)

    def reconcile_all(self, domains: Iterable[DomainLinks]) -> None:
        started = time.perf_counter()
        self.changes.links.forget()
        for dom in domains:
            try:
                self.reconcile(dom)
            except KernelError as exc:
                self.changes.failed(dom, "reconcile failed", exc)
        self.metrics.reconcile_seconds.observe(time.perf_counter() - started)

    def survey(self, dom: DomainLinks) -> Survey:
        """Read one domain's kernel state and plan() it, changing nothing (wgmesh-worker --drift
        uses this too). Raises InterfaceMissing without wg-, another KernelError when a read fails."""
        changes, links = self.changes, self.changes.links
        desired = self.journal.keys(dom.domain)
        device = changes.selector.for_interface(dom.wg).device(dom.wg)
        now = self.clock()
        since = changes.since.setdefault(dom.domain, {})
        for key in device.peers:
            if key not in desired:
                since.setdefault(key, now)  # unmanaged: the grace period starts when we first see it
        wg_index = links.ifindex(dom.wg)
        if wg_index is None:
            raise InterfaceMissing(f"interface {dom.wg} vanished")
        vx_index = links.ifindex(dom.vx)
        routes = links.host_routes(wg_index)
        fdb = links.fdb_destinations(vx_index, wg_index) if vx_index is not None else None
        active_since = state.active_since(self.ha_state_file) if self.ha_state_file else 0.0
        todo = plan(
            desired,
            device.peers,
            routes,
            fdb,
            lambda k: lladdr(dom, k),
            self.static,
            since,
            now,
            self.policy,
            active_since,
        )
        return Survey(todo, device.peers, now, wg_index, vx_index)

    def reconcile(self, dom: DomainLinks) -> None:
        changes = self.changes
        desired = self.journal.keys(dom.domain)
        self.metrics.journal_keys.labels(dom.domain).set(len(desired))
        try:
            found = self.survey(dom)
        except InterfaceMissing as exc:
            log.warning("domain %s: %s; %d journal keys wait for it", dom.domain, exc, len(desired))
            return
        todo, now = found.plan, found.now
        if todo.remove:
            log.info("domain %s: removing %d stale peers", dom.domain, len(todo.remove))
            changes.remove(dom, todo.remove_lladdrs)
        if todo.add_peers:
            log.info("domain %s: reconcile adds %d peers", dom.domain, len(todo.add_peers))
            changes.add(dom, todo.add_peers, now)
        if todo.fix_peers:
            log.info("domain %s: reconcile corrects allowed-ips of %d peers", dom.domain, len(todo.fix_peers))
            changes.add(dom, todo.fix_peers, now, replace_allowed_ips=True)
        done = set(todo.add_peers) | set(todo.fix_peers)
        repair = [k for k in todo.add_links if k not in done]
        if repair:
            log.info("domain %s: reconcile repairs routes/FDB of %d peers", dom.domain, len(repair))
            changes.add_links(dom, repair, found.wg_index, found.vx_index)
        self.metrics.peers.labels(dom.domain).set(len(found.peers) + len(todo.add_peers) - len(todo.remove))
