"""A restart of wgmesh-wg@ on a gateway: the device comes back with its static peers and its nodes.

The restart (a wireguard-go upgrade does one; a reboot makes the device anew the same way) makes
an empty device. The unit loads the role's static peers file (docs/gateway.md, "What survives a
restart and a reboot"); the worker puts the node peers back from its journal (docs/worker.md).
One restart on the first gateway, after every other test of the scenario (this file sorts last):
gw2's key is a peer of gw1 again with its link-local /128 and its endpoint, a node key published
before is back, and each gateway's uplink answers the other over WireGuard again.
"""

import sys
from pathlib import Path

from wgmesh.derive import lladdr_from_key

# The repository root: tests.support is shared by the tests, bench/ and Molecule.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.support.molecule import INVENTORY, example_vars, http, podman_host, podman_hosts, uplink_status
from tests.support.procs import wait_until

DOMAIN = example_vars()["wgmesh_domains"][0]  # ffexample_welt
WG = "wg-" + DOMAIN["name"].removeprefix(DOMAIN["prefix"])  # wg-welt
GW1, GW2 = sorted(INVENTORY.get_hosts("gateways"))  # gw1.example.net, gw2.example.net
testinfra_hosts = podman_hosts("broker")


def _peers(gateway) -> dict[str, tuple[str, str]]:
    """public key -> (endpoint, allowed IPs) from `wg show dump`."""
    lines = gateway.check_output(f"wg show {WG} dump").splitlines()[1:]
    return {f[0]: (f[2], f[3]) for f in (line.split("\t") for line in lines)}


def _answers(gateway, lladdr) -> bool:
    """The uplink check across the WireGuard link, from `gateway` to the other's lladdr."""
    try:
        return uplink_status(gateway, lladdr, WG) == 200
    except AssertionError:  # no answer yet: the command failed
        return False


def test_a_restarted_device_gets_its_static_peers_and_its_nodes_back(host):
    gw1, gw2 = podman_host(GW1), podman_host(GW2)
    node = gw1.check_output("wg genkey | wg pubkey")
    node_ips = f"{lladdr_from_key(node)}/128"
    status, text = http(host, "http://localhost/api/v2/wg/key/exchange", {"domain": DOMAIN["name"], "public_key": node})
    assert status == 200, text
    wait_until(lambda: _peers(gw1).get(node, ("", ""))[1] == node_ips, 60, 1, f"{node} on {GW1} before the restart")
    gw1_key, gw2_key = (g.check_output(f"wg show {WG} public-key") for g in (gw1, gw2))
    gw1_ll, gw2_ll = (str(lladdr_from_key(k)) for k in (gw1_key, gw2_key))

    gw1.check_output(f"systemctl restart wgmesh-wg@{WG}.service")

    def back() -> bool:
        peers = _peers(gw1)
        return peers.get(gw2_key, ("", ""))[1] == f"{gw2_ll}/128" and peers.get(node, ("", ""))[1] == node_ips

    wait_until(back, 60, 1, f"{GW2}'s key and the node's on {GW1} after the restart")
    endpoint = _peers(gw1)[gw2_key][0]
    assert endpoint.endswith(f":{DOMAIN['port']}"), f"{GW2}'s endpoint on {GW1}: {endpoint}"
    wait_until(lambda: _answers(gw1, gw2_ll) and _answers(gw2, gw1_ll), 90, 1, "the uplink checks across the link")
