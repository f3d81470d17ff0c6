"""Promotion (keepalived notify MASTER), carried out on every domain's interface (demotion: demote.py).

Order: the source route first (the handshakes must leave from the VIP), then per interface the
fwmark that route keys on, the configured endpoints of static peers nobody taught us (names
resolved: static.py), peers with a possibly live old session removed and added back, the
endpoints with the trigger in one request (endpoints go before the keepalive that uses them),
then the undo in a second one. One domain's failure is
reported and never stops the others: every second counts for the nodes of the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from wgmesh.ha import static
from wgmesh.ha.plan import promotion_plan
from wgmesh.ha.route import SourceRoute
from wgmesh.worker.domains import DomainLinks
from wgmesh.worker.errors import KernelError
from wgmesh.worker.selector import BackendSelector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DomainOutcome:
    domain: str
    wg: str
    endpoints_applied: int = 0
    configured_applied: int = 0
    sessions_dropped: int = 0
    handshakes: int = 0
    unknown: int = 0
    seconds: float = 0.0
    error: str | None = None


def promote_domain(
    selector: BackendSelector,
    dom: DomainLinks,
    learnt: Mapping[str, str],
    fwmark: int | None,
    configured: Mapping[str, str | None] | None = None,
) -> DomainOutcome:
    started = time.perf_counter()
    try:
        backend = selector.for_interface(dom.wg)
        device = backend.device(dom.wg)
        if fwmark is not None and device.fwmark != fwmark:
            backend.set_fwmark(dom.wg, fwmark)
        static_endpoints = static.resolve(static.needed(device.peers, learnt, configured or {}))
        todo = promotion_plan(device.peers, learnt, time.time(), static_endpoints)
        if todo.readd:  # drop old sessions: see plan.py
            backend.readd_peers(dom.wg, [(p.public_key, p.allowed_ips) for p in todo.readd])
        backend.update_peers(dom.wg, todo.endpoints + todo.trigger)
        backend.update_peers(dom.wg, todo.undo)
    except KernelError as exc:
        selector.forget(dom.wg)
        return DomainOutcome(dom.domain, dom.wg, seconds=time.perf_counter() - started, error=str(exc))
    return DomainOutcome(
        dom.domain,
        dom.wg,
        endpoints_applied=todo.learnt_applied,
        configured_applied=todo.configured_applied,
        sessions_dropped=len(todo.readd),
        handshakes=len(todo.triggered),
        unknown=len(todo.unknown),
        seconds=time.perf_counter() - started,
    )


def promote(
    domains: Iterable[DomainLinks],
    selector: BackendSelector,
    learnt: Mapping[str, Mapping[str, str]],
    route: SourceRoute | None,
    static_peers: Mapping[str, str | None] | None = None,
) -> tuple[str | None, list[DomainOutcome]]:
    """(route error or None, one outcome per domain). Without a working source route the
    handshakes would leave from the member's own address and pull nodes away from the VIP, so
    a route failure stops the promotion before any handshake."""
    fwmark = route.fwmark if route is not None else None
    if route is not None:
        try:
            for line in route.install():
                log.info("source route: %s", line)
        except KernelError as exc:
            return str(exc), []
    outcomes = []
    for dom in domains:
        outcome = promote_domain(selector, dom, learnt.get(dom.domain, {}), fwmark, static_peers)
        if outcome.error:
            log.error("domain %s: promotion failed: %s", dom.domain, outcome.error)
        else:
            log.info(
                "domain %s: %s: %d learnt endpoints applied, %d peers asked to handshake, %d of them"
                " after dropping an old session, %d configured static-peer endpoints applied (%.0f ms)%s",
                dom.domain,
                dom.wg,
                outcome.endpoints_applied,
                outcome.handshakes,
                outcome.sessions_dropped,
                outcome.configured_applied,
                outcome.seconds * 1000,
                f"; {outcome.unknown} learnt keys not on the interface" if outcome.unknown else "",
            )
        outcomes.append(outcome)
    return None, outcomes
