"""Pure decisions of a promotion, for one WireGuard interface (no I/O here).

1. Endpoints learnt from the partner are applied now, and only now (endpoints.py says why). A
   static peer (another gateway) that has none, learnt or its own, gets the endpoint the gateway
   role configured (a fresh pair: the partner had nothing to teach).
2. Every peer with a known endpoint then handshakes at once. The trigger: a peer's
   persistent-keepalive going from 0 to a value makes WireGuard send a keepalive at once, and
   without a session that keepalive becomes a handshake initiation (kernel and wireguard-go
   alike; docs/ha.md). A peer whose keepalive is already on goes to 0 and back.
3. A peer this member may still hold a session with (a handshake less than SESSION_LIFETIME_S
   ago: it was active before, or came back within minutes) is removed and added back first.
   Otherwise the trigger's keepalive would go out over that old session, which the node has
   replaced by one with the partner, and no handshake would follow: the node stays cut off
   until its session with the partner expires (seen with bench/ha_failover.py after a clean stop).
4. The trigger is undone: keepalive back to what the peer had. The worker's reconcile never
   sets keepalives, so it does not fight the trigger, and nodes are not sent a keepalive
   every TRIGGER_KEEPALIVE_S.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from wgmesh.worker.backend import Peer, PeerUpdate

# Any value > 0 triggers. 25 s (the value wg(8) suggests) is harmless should the undo never run.
TRIGGER_KEEPALIVE_S = 25
# WireGuard's Reject-After-Time (180 s) plus a margin: an older session is never used to send.
SESSION_LIFETIME_S = 180 + 10


@dataclass
class PromotionPlan:
    readd: list[Peer] = field(default_factory=list)  # removed and added back: no session left
    endpoints: list[PeerUpdate] = field(default_factory=list)  # endpoints to set now
    trigger: list[PeerUpdate] = field(default_factory=list)  # in order: one handshake per peer
    undo: list[PeerUpdate] = field(default_factory=list)  # keepalives back to what they were
    triggered: list[str] = field(default_factory=list)  # the peers asked to handshake
    learnt_applied: int = 0  # endpoints that came from the partner and differed
    configured_applied: int = 0  # static peers' configured endpoints, where nothing better was known
    unknown: list[str] = field(default_factory=list)  # learnt keys this interface does not have


def promotion_plan(
    peers: Mapping[str, Peer], learnt: Mapping[str, str], now: float, configured: Mapping[str, str] | None = None
) -> PromotionPlan:
    """peers: the interface's peers now; learnt: key -> endpoint from the partner; now: epoch s;
    configured: static peer -> its configured endpoint (an address: names resolved by the caller)."""
    result = PromotionPlan(unknown=sorted(k for k in learnt if k not in peers))
    for key, peer in peers.items():
        endpoint = learnt.get(key) or peer.endpoint
        if endpoint is None and configured and configured.get(key):
            endpoint = configured[key]
            result.configured_applied += 1
        elif endpoint is None:
            continue  # nowhere to send to: the node will come to us
        elif endpoint != peer.endpoint:
            result.learnt_applied += 1
        recent = peer.last_handshake > 0 and now - peer.last_handshake < SESSION_LIFETIME_S
        if recent:
            result.readd.append(peer)
        if recent or endpoint != peer.endpoint:  # a re-added peer has no endpoint
            result.endpoints.append(PeerUpdate(key, endpoint=endpoint))
        result.triggered.append(key)
        keepalive = peer.keepalive
        if keepalive and not recent:
            result.trigger += [PeerUpdate(key, keepalive=0), PeerUpdate(key, keepalive=keepalive)]
        elif keepalive:  # added back with keepalive 0: going to its value triggers
            result.trigger.append(PeerUpdate(key, keepalive=keepalive))
        else:
            result.trigger.append(PeerUpdate(key, keepalive=TRIGGER_KEEPALIVE_S))
            result.undo.append(PeerUpdate(key, keepalive=0))
    return result
