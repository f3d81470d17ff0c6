"""Demotion (keepalived notify BACKUP / FAULT / STOP): a standby must never send.

The members share one WireGuard key, so any packet the standby sends (batman-adv or VXLAN
traffic to a node's or another gateway's link-local makes it initiate a handshake) pulls that
peer's endpoint for the pair to the standby's own address, away from the active member
(docs/ha.md). A standby's peers therefore have no endpoint and no keepalive. WireGuard cannot
unset an endpoint: every peer that has one (or a keepalive) is removed and added back with the
same allowed-ips, in one request per interface where the backend allows. Routes and FDB entries
are not tied to peers (as plan.py's re-add). The source route goes first (the caller), then
this; one domain's failure is reported and never stops the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from wgmesh.worker.backend import Peer
from wgmesh.worker.domains import DomainLinks
from wgmesh.worker.errors import KernelError
from wgmesh.worker.selector import BackendSelector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemotionOutcome:
    domain: str
    wg: str
    dropped: int = 0  # peers that had an endpoint or a keepalive
    seconds: float = 0.0
    error: str | None = None


def could_send(peer: Peer) -> bool:
    """A peer this member could send to (an endpoint) or would send to by itself (a keepalive)."""
    return peer.endpoint is not None or peer.keepalive > 0


def demote_domain(selector: BackendSelector, dom: DomainLinks) -> DemotionOutcome:
    started = time.perf_counter()
    try:
        backend = selector.for_interface(dom.wg)
        todo = [p for p in backend.device(dom.wg).peers.values() if could_send(p)]
        backend.readd_peers(dom.wg, [(p.public_key, p.allowed_ips) for p in todo])
    except KernelError as exc:
        selector.forget(dom.wg)
        return DemotionOutcome(dom.domain, dom.wg, seconds=time.perf_counter() - started, error=str(exc))
    return DemotionOutcome(dom.domain, dom.wg, dropped=len(todo), seconds=time.perf_counter() - started)


def drop_endpoints(domains: Iterable[DomainLinks], selector: BackendSelector) -> list[DemotionOutcome]:
    outcomes = []
    for dom in domains:
        outcome = demote_domain(selector, dom)
        if outcome.error:
            log.error("domain %s: demotion failed, its peers may keep their endpoints: %s", dom.domain, outcome.error)
        else:
            log.info(
                "domain %s: %s: %d endpoints dropped (%.0f ms)",
                dom.domain,
                dom.wg,
                outcome.dropped,
                outcome.seconds * 1000,
            )
        outcomes.append(outcome)
    return outcomes
