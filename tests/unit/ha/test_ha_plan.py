"""Promotion decisions: learnt endpoints applied only now, a trigger per reachable peer, the undo."""

from __future__ import annotations

from wgmesh.ha.plan import TRIGGER_KEEPALIVE_S, promotion_plan
from wgmesh.worker.backend import Peer, PeerUpdate

NODE_A = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
NODE_B = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="
NODE_C = "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg="
GATEWAY = "gP3VJnTTvnQut+z4O+m0N9RgMyXbgyUbUkF3E3TKX2w="
NOW = 1_800_000_000.0


def peers(*items: Peer) -> dict[str, Peer]:
    return {p.public_key: p for p in items}


def test_learnt_endpoint_is_applied_before_the_trigger_and_the_trigger_is_undone():
    todo = promotion_plan(peers(Peer(NODE_A)), {NODE_A: "198.51.100.7:4242"}, NOW)
    assert todo.endpoints == [PeerUpdate(NODE_A, endpoint="198.51.100.7:4242")]
    assert todo.trigger == [PeerUpdate(NODE_A, keepalive=TRIGGER_KEEPALIVE_S)]
    assert todo.undo == [PeerUpdate(NODE_A, keepalive=0)]
    assert todo.triggered == [NODE_A]


def test_peer_without_any_endpoint_is_left_alone():
    todo = promotion_plan(peers(Peer(NODE_A)), {}, NOW)
    assert (todo.endpoints, todo.trigger, todo.undo, todo.triggered) == ([], [], [], [])


def test_peer_with_its_own_endpoint_is_triggered_without_an_endpoint_change():
    todo = promotion_plan(peers(Peer(NODE_A, endpoint="[2001:db8::7]:4242")), {NODE_A: "[2001:db8::7]:4242"}, NOW)
    assert todo.endpoints == []  # already there: no needless endpoint write
    assert todo.triggered == [NODE_A]


def test_learnt_endpoint_wins_over_a_stale_own_one():
    todo = promotion_plan(peers(Peer(NODE_A, endpoint="198.51.100.1:1")), {NODE_A: "198.51.100.7:4242"}, NOW)
    assert todo.endpoints == [PeerUpdate(NODE_A, endpoint="198.51.100.7:4242")]


def test_peer_with_keepalive_on_goes_to_zero_and_back_and_needs_no_undo():
    # a static gateway peer with keepalive 25: only a 0 -> N change sends at once
    todo = promotion_plan(peers(Peer(GATEWAY, keepalive=25)), {GATEWAY: "203.0.113.9:40011"}, NOW)
    assert todo.trigger == [PeerUpdate(GATEWAY, keepalive=0), PeerUpdate(GATEWAY, keepalive=25)]
    assert todo.undo == []
    assert todo.triggered == [GATEWAY]


def test_learnt_keys_the_interface_lacks_are_reported_not_added():
    todo = promotion_plan(peers(Peer(NODE_A)), {NODE_B: "198.51.100.8:1", NODE_C: "198.51.100.9:1"}, NOW)
    assert todo.unknown == sorted([NODE_B, NODE_C])
    assert todo.endpoints == [] and todo.triggered == []


def test_every_reachable_peer_is_triggered_once():
    todo = promotion_plan(
        peers(Peer(NODE_A), Peer(NODE_B, endpoint="198.51.100.2:2"), Peer(NODE_C)),
        {NODE_A: "198.51.100.1:1"},
        NOW,
    )
    assert sorted(todo.triggered) == sorted([NODE_A, NODE_B])
    assert sorted(u.public_key for u in todo.undo) == sorted([NODE_A, NODE_B])


def test_peer_with_a_possibly_live_session_is_added_back_before_the_trigger():
    """A member promoted again within minutes still holds its old session with the node; the
    trigger's keepalive would go out over it (the node has moved on to the partner's session)
    and no handshake would follow. Found by bench/ha_failover.py after a clean stop."""
    peer = Peer(NODE_A, ("fe80::1/128",), last_handshake=NOW - 100, endpoint="198.51.100.7:4242")
    todo = promotion_plan(peers(peer), {}, NOW)
    assert todo.readd == [peer]
    # added back without endpoint: it is set again, then the keepalive triggers, then the undo
    assert todo.endpoints == [PeerUpdate(NODE_A, endpoint="198.51.100.7:4242")]
    assert todo.trigger == [PeerUpdate(NODE_A, keepalive=TRIGGER_KEEPALIVE_S)]
    assert todo.undo == [PeerUpdate(NODE_A, keepalive=0)]


def test_session_older_than_reject_after_time_needs_no_re_add():
    peer = Peer(NODE_A, ("fe80::1/128",), last_handshake=NOW - 200, endpoint="198.51.100.7:4242")
    todo = promotion_plan(peers(peer), {}, NOW)
    assert todo.readd == []
    assert todo.triggered == [NODE_A]


def test_re_added_static_peer_goes_straight_to_its_keepalive():
    peer = Peer(GATEWAY, ("fe80::9/128",), last_handshake=NOW - 5, endpoint="203.0.113.9:40011", keepalive=25)
    todo = promotion_plan(peers(peer), {}, NOW)
    assert todo.readd == [peer]
    assert todo.trigger == [PeerUpdate(GATEWAY, keepalive=25)]  # 0 after the re-add -> 25 sends
    assert todo.undo == []


def test_a_static_peer_without_a_learnt_endpoint_gets_its_configured_one():
    # a fresh pair: the partner never told us where the other gateway is; the inventory did
    todo = promotion_plan(peers(Peer(GATEWAY)), {}, NOW, configured={GATEWAY: "203.0.113.9:40011"})
    assert todo.endpoints == [PeerUpdate(GATEWAY, endpoint="203.0.113.9:40011")]
    assert todo.triggered == [GATEWAY]
    assert todo.learnt_applied == 0 and todo.configured_applied == 1


def test_a_learnt_endpoint_wins_over_the_configured_one():
    # the other gateway is reached at another address than its name says (NAT, roaming)
    todo = promotion_plan(
        peers(Peer(GATEWAY)), {GATEWAY: "198.51.100.9:40011"}, NOW, configured={GATEWAY: "203.0.113.9:40011"}
    )
    assert todo.endpoints == [PeerUpdate(GATEWAY, endpoint="198.51.100.9:40011")]
    assert todo.configured_applied == 0
