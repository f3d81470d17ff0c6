"""Pure decisions of a promotion, for one WireGuard interface (no I/O here).

1. Endpoints learnt from the partner are applied now, and only now (endpoints.py says why).
2. Every peer with a known endpoint then handshakes at once. The trigger: a peer's
   persistent-keepalive going from 0 to a value makes WireGuard send a keepalive at once, and
   without a session that keepalive becomes a handshake initiation (kernel and wireguard-go
   alike; docs/ha.md). A peer whose keepalive is already on goes to 0 and back.
3. The trigger is undone: keepalive back to what the peer had. The worker's reconcile never
   sets keepalives, so it does not fight the trigger, and nodes are not sent a keepalive
   every TRIGGER_KEEPALIVE_S.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from wgmesh.worker.backend import Peer, PeerUpdate

# Any value > 0 triggers. 25 s (the value wg(8) suggests) is harmless should the undo never run.
TRIGGER_KEEPALIVE_S = 25


@dataclass
class PromotionPlan:
    endpoints: list[PeerUpdate] = field(default_factory=list)  # learnt endpoints to apply now
    trigger: list[PeerUpdate] = field(default_factory=list)  # in order: one handshake per peer
    undo: list[PeerUpdate] = field(default_factory=list)  # keepalives back to what they were
    triggered: list[str] = field(default_factory=list)  # the peers asked to handshake
    unknown: list[str] = field(default_factory=list)  # learnt keys this interface does not have


def promotion_plan(peers: Mapping[str, Peer], learnt: Mapping[str, str]) -> PromotionPlan:
    """peers: the interface's peers now; learnt: key -> endpoint from the partner."""
    result = PromotionPlan(unknown=sorted(k for k in learnt if k not in peers))
    for key, peer in peers.items():
        endpoint = learnt.get(key)
        if endpoint is not None and endpoint != peer.endpoint:
            result.endpoints.append(PeerUpdate(key, endpoint=endpoint))
        if endpoint is None and peer.endpoint is None:
            continue  # nowhere to send to: the node will come to us
        result.triggered.append(key)
        if peer.keepalive:
            result.trigger += [PeerUpdate(key, keepalive=0), PeerUpdate(key, keepalive=peer.keepalive)]
        else:
            result.trigger.append(PeerUpdate(key, keepalive=TRIGGER_KEEPALIVE_S))
            result.undo.append(PeerUpdate(key, keepalive=0))
    return result
