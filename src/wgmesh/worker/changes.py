"""Kernel changes for one domain: peers in a batch, then routes and FDB entries in bulk; removal
in reverse order. Every kernel-side failure is a KernelError (errors.py), which failed() turns
into a log line and a count; the journal keeps the keys, so the next reconcile retries."""

from __future__ import annotations

import ipaddress
import logging

from wgmesh import derive
from wgmesh.worker.backend import BackendError, Device
from wgmesh.worker.domains import DomainLinks
from wgmesh.worker.errors import KernelError
from wgmesh.worker.journal import Journal
from wgmesh.worker.links import LinkError, Links
from wgmesh.worker.metrics import WorkerMetrics
from wgmesh.worker.selector import BackendSelector

log = logging.getLogger(__name__)


def lladdr(dom: DomainLinks, key: str) -> ipaddress.IPv6Address:
    return derive.lladdr_from_key(key, dom.rule)


class KernelChanges:
    """Used from the apply thread only (Links holds one rtnetlink socket)."""

    def __init__(self, selector: BackendSelector, links: Links, journal: Journal, metrics: WorkerMetrics):
        self.selector = selector
        self.links = links
        self.journal = journal
        self.metrics = metrics
        # key -> when this process last put it into the kernel or first saw it (see reconcile.plan)
        self.since: dict[str, dict[str, float]] = {}

    def failed(self, dom: DomainLinks, what: str, exc: KernelError) -> None:
        """One domain's kernel-side failure: logged, counted, and the interface looked up anew."""
        self.selector.forget(dom.wg)
        self.links.forget()
        self.metrics.kernel_errors.labels(dom.domain).inc()
        log.error("domain %s: %s: %s; retried at the next reconcile", dom.domain, what, exc)

    def device(self, dom: DomainLinks, why: str = "") -> Device | None:
        """The domain's WireGuard device as it is now, or None (logged with `why`, and the
        interface looked up anew next time) when its backend cannot read it."""
        try:
            return self.selector.for_interface(dom.wg).device(dom.wg)
        except BackendError as exc:
            self.selector.forget(dom.wg)
            log.warning("domain %s: %s%s", dom.domain, exc, f"; {why}" if why else "")
            return None

    def add(self, dom: DomainLinks, keys: list[str], now: float, replace_allowed_ips: bool = False) -> None:
        """Peers in one batch, then routes and FDB entries in bulk. Errors refused per key are
        logged per key; a failure of the whole request raises KernelError."""
        if not keys:
            return
        try:
            backend = self.selector.for_interface(dom.wg)
            peers = [(k, (f"{lladdr(dom, k)}/128",)) for k in keys]
            backend.set_peers(dom.wg, peers, replace_allowed_ips=replace_allowed_ips)
        except BackendError as exc:
            self.selector.forget(dom.wg)
            for key in keys:
                log.error("domain %s: key %s: peer not added: %s", dom.domain, key, exc)
            self.metrics.key_errors.labels(dom.domain).inc(len(keys))
            self.metrics.kernel_errors.labels(dom.domain).inc()
            return
        since = self.since.setdefault(dom.domain, {})
        for key in keys:
            since[key] = now
        self.metrics.peers_added.labels(dom.domain).inc(len(keys))
        wg_index = self.links.ifindex(dom.wg)
        vx_index = self.links.ifindex(dom.vx)
        if wg_index is None:
            log.error("domain %s: interface %s vanished; routes for %d keys not added", dom.domain, dom.wg, len(keys))
            return
        if vx_index is None:
            log.error("domain %s: VXLAN interface %s missing; no FDB entries added", dom.domain, dom.vx)
        lladdrs = {lladdr(dom, k): k for k in keys}
        failed = self.links.add_many(lladdrs, wg_index, vx_index)
        if failed:  # perhaps an interface was recreated under a new index: look again, retry once
            self.links.forget()
            wg_index, vx_index = self.links.ifindex(dom.wg), self.links.ifindex(dom.vx)
            if wg_index is not None:
                failed = self.links.add_many([a for a, dummy in failed], wg_index, vx_index)
        self._report(dom, lladdrs, failed)

    def add_links(self, dom: DomainLinks, keys: list[str], wg_index: int, vx_index: int | None) -> None:
        """Routes and FDB entries only (the peers are in place)."""
        lladdrs = {lladdr(dom, k): k for k in keys}
        self._report(dom, lladdrs, self.links.add_many(lladdrs, wg_index, vx_index))

    def _report(self, dom: DomainLinks, lladdrs: dict, failed: list) -> None:
        for address, exc in failed:
            log.error("domain %s: key %s: %s", dom.domain, lladdrs[address], exc)
            self.metrics.key_errors.labels(dom.domain).inc()

    def remove(self, dom: DomainLinks, removals: dict[str, tuple[ipaddress.IPv6Address, ...]]) -> None:
        """Undo in reverse order: FDB entry, route, peer. Parts that are gone already are fine."""
        wg_index = self.links.ifindex(dom.wg)
        vx_index = self.links.ifindex(dom.vx)
        for key, addresses in removals.items():
            try:
                for address in addresses:
                    if vx_index is not None and wg_index is not None:
                        self.links.del_fdb(address, vx_index, wg_index)
                    if wg_index is not None:
                        self.links.del_route(address, wg_index)
            except LinkError as exc:
                log.error("domain %s: key %s: %s", dom.domain, key, exc)
                self.metrics.kernel_errors.labels(dom.domain).inc()
        try:
            self.selector.for_interface(dom.wg).remove_peers(dom.wg, list(removals))
        except BackendError as exc:
            self.failed(dom, f"removing {len(removals)} stale peers", exc)
            return
        self.journal.remove(dom.domain, removals)
        since = self.since.setdefault(dom.domain, {})
        for key in removals:
            since.pop(key, None)
        self.metrics.peers_removed.labels(dom.domain).inc(len(removals))
