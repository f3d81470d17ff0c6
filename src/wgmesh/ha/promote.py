"""Promotion (keepalived notify MASTER), carried out on every domain's interface (demotion: demote.py).

Order: the source route first (the handshakes must leave from the VIP). Then, domain by
domain, the fwmark that route keys on and every peer whose endpoint is already known (learnt
from the partner, or its own): peers with a possibly live old session removed and added back,
the endpoints with the trigger in one request (endpoints go before the keepalive that uses
them), then the undo in a second one. No name is resolved on that path. Only when every
domain's nodes were triggered do the static peers that still need their configured endpoint
get it (names resolved: static.py), with the same plan and requests: a slow or dead resolver,
maybe part of the outage that caused the takeover, delays no node. One domain's failure is
reported and never stops the others: every second counts for the nodes of the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from wgmesh.ha import static
from wgmesh.ha.plan import PromotionPlan, promotion_plan
from wgmesh.ha.route import SourceRoute
from wgmesh.worker.backend import WireGuardBackend
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
    seconds: float = 0.0  # the peers with a known endpoint: what the nodes wait for
    static_seconds: float = 0.0  # the configured static peers, names resolved, afterwards
    error: str | None = None
    waiting: Mapping[str, str] | None = None  # static peer -> configured endpoint, for the second step


def _apply(backend: WireGuardBackend, wg: str, todo: PromotionPlan) -> None:
    if todo.readd:  # drop old sessions: see plan.py
        backend.readd_peers(wg, [(p.public_key, p.allowed_ips) for p in todo.readd])
    backend.update_peers(wg, todo.endpoints + todo.trigger)
    backend.update_peers(wg, todo.undo)


def _failed(selector: BackendSelector, outcome: DomainOutcome, error: str, **times: float) -> DomainOutcome:
    selector.forget(outcome.wg)
    return replace(outcome, error=error, waiting=None, **times)


def promote_domain(
    selector: BackendSelector,
    dom: DomainLinks,
    learnt: Mapping[str, str],
    fwmark: int | None,
    configured: Mapping[str, str | None] | None = None,
) -> DomainOutcome:
    """Every peer with a known endpoint; the outcome's `waiting` are the static peers that
    need their configured endpoint (promote_static_peers, once every domain got here)."""
    started = time.perf_counter()
    outcome = DomainOutcome(dom.domain, dom.wg)
    try:
        backend = selector.for_interface(dom.wg)
        device = backend.device(dom.wg)
        if fwmark is not None and device.fwmark != fwmark:
            backend.set_fwmark(dom.wg, fwmark)
        todo = promotion_plan(device.peers, learnt, time.time())
        _apply(backend, dom.wg, todo)
    except KernelError as exc:
        return _failed(selector, outcome, str(exc), seconds=time.perf_counter() - started)
    return replace(
        outcome,
        endpoints_applied=todo.learnt_applied,
        sessions_dropped=len(todo.readd),
        handshakes=len(todo.triggered),
        unknown=len(todo.unknown),
        seconds=time.perf_counter() - started,
        waiting=static.needed(device.peers, learnt, configured or {}),
    )


def promote_static_peers(selector: BackendSelector, outcome: DomainOutcome) -> DomainOutcome:
    """The static peers promote_domain left waiting: names resolved, then their endpoint and trigger."""
    if not outcome.waiting:
        return outcome
    started = time.perf_counter()
    resolved = static.resolve(outcome.waiting)
    try:
        backend = selector.for_interface(outcome.wg)
        # read again: a peer that reached us while names were resolved has an endpoint now
        peers = backend.device(outcome.wg).peers
        still = static.needed(peers, {}, resolved)
        todo = promotion_plan({key: peers[key] for key in still}, {}, time.time(), still)
        _apply(backend, outcome.wg, todo)
    except KernelError as exc:
        # the nodes were triggered: say what is left undone
        error = f"configured static peers ({', '.join(sorted(outcome.waiting))}): {exc}"
        return _failed(selector, outcome, error, static_seconds=time.perf_counter() - started)
    return replace(
        outcome,
        configured_applied=todo.configured_applied,
        sessions_dropped=outcome.sessions_dropped + len(todo.readd),
        handshakes=outcome.handshakes + len(todo.triggered),
        static_seconds=time.perf_counter() - started,
        waiting=None,
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
    known = [promote_domain(selector, dom, learnt.get(dom.domain, {}), fwmark, static_peers) for dom in domains]
    outcomes = [promote_static_peers(selector, outcome) for outcome in known]
    for outcome in outcomes:
        _log(outcome)
    return None, outcomes


def _log(outcome: DomainOutcome) -> None:
    if outcome.error:
        log.error("domain %s: promotion failed: %s", outcome.domain, outcome.error)
        return
    log.info(
        "domain %s: %s: %d learnt endpoints applied, %d peers asked to handshake, %d of them after dropping an"
        " old session, %d configured static-peer endpoints applied (%.0f ms%s)%s",
        outcome.domain,
        outcome.wg,
        outcome.endpoints_applied,
        outcome.handshakes,
        outcome.sessions_dropped,
        outcome.configured_applied,
        outcome.seconds * 1000,
        f", then {outcome.static_seconds * 1000:.0f} ms for those" if outcome.static_seconds else "",
        f"; {outcome.unknown} learnt keys not on the interface" if outcome.unknown else "",
    )
