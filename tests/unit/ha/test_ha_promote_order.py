"""Promotion order over several domains: every node's trigger before any static peer's name lookup.

The backend is a stand-in (the real one: tests/integration/ha/test_ha_promote.py with
wireguard-go) and so is getaddrinfo (no resolver in unit tests); what is checked is the order
of the requests and of the lookups.
"""

from __future__ import annotations

import functools
import logging
import socket
import time

from tests.unit.ha.stand_ins import Selector, dom
from wgmesh.ha import static
from wgmesh.ha.plan import TRIGGER_KEEPALIVE_S
from wgmesh.ha.promote import promote
from wgmesh.worker.backend import BackendError, Device, Peer, PeerUpdate

NODE_A = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
NODE_B = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="
GW_A = "gP3VJnTTvnQut+z4O+m0N9RgMyXbgyUbUkF3E3TKX2w="
GW_B = "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg="
CONFIGURED = {GW_A: "gw-a.example.net:40011", GW_B: "gw-b.example.net:40012"}
ADDRESSES = {"gw-a.example.net": "192.0.2.1", "gw-b.example.net": "192.0.2.2"}


class Backend:
    """Records each non-empty request, in one list with the name lookups."""

    name = "stand-in"

    def __init__(self, peers: dict[str, dict[str, Peer]], events: list[tuple]):
        self.peers = peers
        self.events = events

    def device(self, ifname: str) -> Device:
        if ifname not in self.peers:
            raise BackendError(f"interface {ifname}: gone")
        return Device("K", 51820, dict(self.peers[ifname]))

    def readd_peers(self, ifname, peers):
        if peers := list(peers):
            self.events.append(("readd", ifname, peers))

    def update_peers(self, ifname, updates):
        if updates := list(updates):
            self.events.append(("update", ifname, updates))


def recording_resolver(monkeypatch, events: list[tuple]) -> None:
    def getaddrinfo(host, port, family, kind):
        events.append(("lookup", host))
        return [(socket.AF_INET, kind, 17, "", (ADDRESSES[host], port))]

    monkeypatch.setattr(static, "resolve", functools.partial(static.resolve, getaddrinfo=getaddrinfo))


def trigger(key: str, endpoint: str | None = None) -> list[tuple]:
    first = [PeerUpdate(key, endpoint=endpoint)] if endpoint else []
    return [[*first, PeerUpdate(key, keepalive=TRIGGER_KEEPALIVE_S)], [PeerUpdate(key, keepalive=0)]]


def test_every_domain_triggers_its_nodes_before_any_static_peer_name_is_looked_up(monkeypatch):
    """A dead resolver (part of the outage that caused the takeover, maybe) must delay no node,
    of this domain or of the next one."""
    events: list[tuple] = []
    backend = Backend(
        {
            "wg-a": {NODE_A: Peer(NODE_A, endpoint="198.51.100.1:1"), GW_A: Peer(GW_A)},
            "wg-b": {NODE_B: Peer(NODE_B), GW_B: Peer(GW_B)},
        },
        events,
    )
    recording_resolver(monkeypatch, events)

    route_error, outcomes = promote(
        [dom("a"), dom("b")], Selector(backend), {"b": {NODE_B: "198.51.100.2:2"}}, None, CONFIGURED
    )

    assert route_error is None and [o.error for o in outcomes] == [None, None]
    a_node, a_undo = trigger(NODE_A)
    b_node, b_undo = trigger(NODE_B, "198.51.100.2:2")
    a_gw, a_gw_undo = trigger(GW_A, "192.0.2.1:40011")
    b_gw, b_gw_undo = trigger(GW_B, "192.0.2.2:40012")
    assert events == [
        ("update", "wg-a", a_node),
        ("update", "wg-a", a_undo),
        ("update", "wg-b", b_node),
        ("update", "wg-b", b_undo),
        ("lookup", "gw-a.example.net"),
        ("update", "wg-a", a_gw),
        ("update", "wg-a", a_gw_undo),
        ("lookup", "gw-b.example.net"),
        ("update", "wg-b", b_gw),
        ("update", "wg-b", b_gw_undo),
    ]
    a, b = outcomes
    assert (a.endpoints_applied, a.configured_applied, a.handshakes) == (0, 1, 2)
    assert (b.endpoints_applied, b.configured_applied, b.handshakes) == (1, 1, 2)


def test_a_failing_domain_costs_the_others_nothing_and_its_names_are_not_looked_up(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="wgmesh.ha.promote")
    events: list[tuple] = []
    backend = Backend({"wg-b": {NODE_B: Peer(NODE_B, endpoint="198.51.100.2:2"), GW_B: Peer(GW_B)}}, events)
    selector = Selector(backend)
    recording_resolver(monkeypatch, events)

    route_error, (a, b) = promote([dom("a"), dom("b")], selector, {}, None, CONFIGURED)
    assert route_error is None

    assert a.error == "interface wg-a: gone" and selector.forgotten == ["wg-a"]
    assert ("lookup", "gw-a.example.net") not in events
    assert b.error is None and b.handshakes == 2 and b.configured_applied == 1
    assert "domain a: promotion failed: interface wg-a: gone" in caplog.text
    assert "domain b: wg-b: 0 learnt endpoints applied, 2 peers asked to handshake" in caplog.text


def test_a_failure_after_the_lookup_is_reported_and_the_nodes_stay_triggered(monkeypatch, caplog):
    events: list[tuple] = []
    peers = {NODE_A: Peer(NODE_A, endpoint="198.51.100.1:1"), GW_A: Peer(GW_A)}
    backend = Backend({"wg-a": peers}, events)

    def lookup_then_interface_gone(host, port, family, kind):
        del backend.peers["wg-a"]  # the interface went away while the name was looked up
        return [(socket.AF_INET, kind, 17, "", (ADDRESSES[host], port))]

    monkeypatch.setattr(static, "resolve", functools.partial(static.resolve, getaddrinfo=lookup_then_interface_gone))
    selector = Selector(backend)

    route_error, (a,) = promote([dom("a")], selector, {}, None, CONFIGURED)
    assert route_error is None

    assert events == [("update", "wg-a", trigger(NODE_A)[0]), ("update", "wg-a", trigger(NODE_A)[1])]
    assert a.error == f"configured static peers ({GW_A}): interface wg-a: gone"
    assert a.handshakes == 1 and selector.forgotten == ["wg-a"]
    assert f"domain a: promotion failed: configured static peers ({GW_A})" in caplog.text


def test_a_static_peer_that_reached_the_member_during_the_lookup_keeps_its_endpoint(monkeypatch):
    events: list[tuple] = []
    backend = Backend({"wg-a": {GW_A: Peer(GW_A)}}, events)

    def lookup_while_the_gateway_handshakes(host, port, family, kind):
        backend.peers["wg-a"][GW_A] = Peer(GW_A, endpoint="203.0.113.1:40011", last_handshake=time.time())
        return [(socket.AF_INET, kind, 17, "", (ADDRESSES[host], port))]

    monkeypatch.setattr(
        static, "resolve", functools.partial(static.resolve, getaddrinfo=lookup_while_the_gateway_handshakes)
    )

    route_error, (a,) = promote([dom("a")], Selector(backend), {}, None, CONFIGURED)
    assert route_error is None

    assert events == []  # its live session and fresh endpoint are left alone
    assert a.error is None and a.configured_applied == 0 and a.handshakes == 0
