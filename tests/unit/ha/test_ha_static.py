"""The static peers' configured endpoints on promotion: which are needed, and names resolved as wg(8) does.

getaddrinfo is a stand-in here (no resolver in unit tests); the real one runs in
tests/integration/ha/test_ha_promote.py (localhost).
"""

from __future__ import annotations

import socket

from wgmesh.ha.static import needed, resolve
from wgmesh.worker.backend import Peer

GW2 = "gP3VJnTTvnQut+z4O+m0N9RgMyXbgyUbUkF3E3TKX2w="
GW3 = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
GW4 = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="


def test_only_static_peers_with_nothing_better_need_their_configured_endpoint():
    peers = {GW2: Peer(GW2), GW3: Peer(GW3), GW4: Peer(GW4, endpoint="192.0.2.4:1")}
    configured = {GW2: "gw2.example.net:40011", GW3: "gw3.example.net:40011", GW4: "gw4:1", "absent": "x:1"}
    assert needed(peers, {GW3: "198.51.100.3:40011"}, configured) == {GW2: "gw2.example.net:40011"}


def test_names_resolve_to_the_first_address_and_a_failure_leaves_the_peer_out(caplog):
    def getaddrinfo(host, port, family, kind):
        assert kind == socket.SOCK_DGRAM
        if host == "gw2.example.net":
            return [
                (socket.AF_INET6, kind, 17, "", ("2001:db8::2", port, 0, 0)),
                (socket.AF_INET, kind, 17, "", ("x", 1)),
            ]
        if host == "192.0.2.3":
            return [(socket.AF_INET, kind, 17, "", ("192.0.2.3", port))]
        raise socket.gaierror(-2, "Name or service not known")

    got = resolve({GW2: "gw2.example.net:40011", GW3: "192.0.2.3:40012", GW4: "gone.example.net:1"}, getaddrinfo)
    assert got == {GW2: "[2001:db8::2]:40011", GW3: "192.0.2.3:40012"}
    assert f"static peer {GW4}: endpoint gone.example.net:1 does not resolve" in caplog.text
