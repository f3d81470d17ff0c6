"""Demotion per domain: which peers are re-added, and one domain's failure never stops the rest.

The backend is a stand-in here (the real ones: tests/integration/ha/test_ha_promote.py with
wireguard-go, and the backends' own tests); what is checked is the choice and the order.
"""

from __future__ import annotations

from tests.unit.ha.stand_ins import Selector, dom
from wgmesh.ha.demote import drop_endpoints
from wgmesh.worker.backend import BackendError, Device, Peer

NODE_A = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
NODE_B = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="
GATEWAY = "gP3VJnTTvnQut+z4O+m0N9RgMyXbgyUbUkF3E3TKX2w="


class Backend:
    name = "stand-in"

    def __init__(self, peers: dict[str, dict[str, Peer]]):
        self.peers = peers
        self.calls: list[tuple] = []

    def device(self, ifname: str) -> Device:
        if ifname not in self.peers:
            raise BackendError(f"interface {ifname}: gone")
        return Device("K", 51820, dict(self.peers[ifname]))

    def readd_peers(self, ifname, peers):
        self.calls.append((ifname, list(peers)))


def test_only_peers_with_an_endpoint_or_a_keepalive_are_readded_with_their_allowed_ips():
    backend = Backend(
        {
            "wg-a": {
                NODE_A: Peer(NODE_A, ("fe80::1/128",), endpoint="198.51.100.7:4242"),
                NODE_B: Peer(NODE_B, ("fe80::2/128",)),  # never came: nothing to drop
                GATEWAY: Peer(GATEWAY, ("fe80::3/128", "10.0.0.0/24"), keepalive=25),
            }
        }
    )
    (outcome,) = drop_endpoints([dom("a")], Selector(backend))
    assert outcome.dropped == 2 and outcome.error is None
    assert backend.calls == [("wg-a", [(NODE_A, ("fe80::1/128",)), (GATEWAY, ("fe80::3/128", "10.0.0.0/24"))])]


def test_a_failing_domain_is_reported_and_the_others_still_drop_their_endpoints(caplog):
    backend = Backend({"wg-b": {NODE_A: Peer(NODE_A, ("fe80::1/128",), endpoint="198.51.100.7:4242")}})
    selector = Selector(backend)
    gone, done = drop_endpoints([dom("a"), dom("b")], selector)
    assert gone.error == "interface wg-a: gone"
    assert selector.forgotten == ["wg-a"]  # the backend is chosen again next time
    assert done.dropped == 1 and backend.calls == [("wg-b", [(NODE_A, ("fe80::1/128",))])]
    assert "domain a: demotion failed, its peers may keep their endpoints: interface wg-a: gone" in caplog.text
