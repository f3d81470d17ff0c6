"""The smoke-vm scenario's mesh VPN data path works on the real kernel stack.

Each test runs once per VM (testinfra over SSH): kernel WireGuard has a
handshake with the other VM, VXLAN runs between the WireGuard link-local
addresses, batman-adv sees the other VM as a neighbour over the VXLAN, and a
ping crosses batman-adv. Nothing is mocked. Expected addresses come from the
daemon's own derivation (wgmesh.derive), so the controller filters that wrote
the config and the daemons are checked to agree on a real kernel.
"""

import ipaddress
import json
import os
import sys
from pathlib import Path

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from wgmesh.derive import lladdr_from_key, vni_from_seed

# The repository root: tests.support is shared by the tests, bench/ and Molecule.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.support.procs import wait_until

INVENTORY = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
VMS = INVENTORY.get_hosts("all")
testinfra_hosts = [f"ansible://{name}?ansible_inventory={INVENTORY.inventory_file}" for name in VMS]

# After converge the mesh settles by itself (batman-adv sends an OGM every
# second); slow TCG guests on a busy machine need some slack.
SETTLE_SECONDS = 120


def _name(host):
    return host.backend.host


def _vars(host):
    return INVENTORY.get_variables(_name(host))


def eventually(check, what):
    """Retry `check` until it returns something true; fail naming `what` otherwise."""
    return wait_until(check, timeout=SETTLE_SECONDS, interval=2, what=what)


def _links(host, kind):
    return json.loads(host.check_output(f"ip -j -d link show type {kind}"))


def _one_link(host, kind):
    links = _links(host, kind)
    assert len(links) == 1, f"expected one {kind} interface, found {[link['ifname'] for link in links]}"
    return links[0]


@pytest.fixture
def stack(host):
    """The VM's WireGuard, VXLAN and batman-adv interfaces (as `ip -j -d link` reports them)."""
    return {kind: _one_link(host, kind) for kind in ("wireguard", "vxlan", "batadv")}


def _wg_dump(host, ifname):
    """`wg show <if> dump`: (own public key, {peer public key: fields})."""
    lines = host.check_output(f"wg show {ifname} dump").splitlines()
    own_public_key = lines[0].split("\t")[1]
    peers = {}
    for line in lines[1:]:
        key, _psk, endpoint, allowed_ips, handshake, *_rest = line.split("\t")
        peers[key] = {"endpoint": endpoint, "allowed_ips": allowed_ips, "handshake": int(handshake)}
    return own_public_key, peers


def test_interfaces_follow_the_domain_naming(stack):
    suffixes = {kind: link["ifname"].split("-", 1) for kind, link in stack.items()}
    assert suffixes == {
        "wireguard": ["wg", "welt"],
        "vxlan": ["vx", "welt"],
        "batadv": ["bat", "welt"],
    }


def test_wireguard_handshake_with_every_other_vm(host, stack):
    wg = stack["wireguard"]["ifname"]
    others = [vm for vm in VMS if vm != _name(host)]

    def handshaken():
        _own, peers = _wg_dump(host, wg)
        return len(peers) == len(others) and all(p["handshake"] > 0 for p in peers.values()) and peers

    peers = eventually(handshaken, f"a WireGuard handshake on {wg} with {others}")
    # Each peer may send only from its own link-local address (docs/architecture.md, "What a worker does per key").
    for key, peer in peers.items():
        assert ipaddress.ip_network(peer["allowed_ips"]) == ipaddress.ip_network(f"{lladdr_from_key(key)}/128")


def test_wireguard_address_is_derived_from_the_own_key(host, stack):
    wg = stack["wireguard"]["ifname"]
    own_public_key, _peers = _wg_dump(host, wg)
    addresses = json.loads(host.check_output(f"ip -j -6 addr show dev {wg}"))[0]["addr_info"]
    assert [ipaddress.ip_address(a["local"]) for a in addresses] == [lladdr_from_key(own_public_key)]


def test_vxlan_runs_between_wireguard_link_local_addresses(host, stack):
    wg, vx = stack["wireguard"]["ifname"], stack["vxlan"]
    own_public_key, peers = _wg_dump(host, wg)
    vxlan = vx["linkinfo"]["info_data"]
    assert vxlan["id"] == vni_from_seed(_vars(host)["smoke_domain_seed"])
    assert vxlan["port"] == 8472
    assert ipaddress.ip_address(vxlan["local6"]) == lladdr_from_key(own_public_key)
    assert vxlan["link"] == wg, "the VXLAN must be bound to the WireGuard interface (link-local remote)"
    fdb = json.loads(host.check_output(f"bridge -j fdb show dev {vx['ifname']}"))
    flood = {ipaddress.ip_address(e["dst"]) for e in fdb if e["mac"] == "00:00:00:00:00:00"}
    assert flood == {lladdr_from_key(key) for key in peers}


def test_batman_adv_sees_the_other_vms_over_vxlan(host, stack):
    bat, vx = stack["batadv"]["ifname"], stack["vxlan"]["ifname"]
    assert stack["vxlan"].get("master") == bat
    others = len(VMS) - 1

    def neighbours():
        table = json.loads(host.check_output(f"batctl meshif {bat} neighbors_json"))
        return len(table) >= others and table

    table = eventually(neighbours, f"{others} batman-adv neighbour(s) on {bat}")
    assert {entry["hard_ifname"] for entry in table} == {vx}


def test_ping_across_batman_adv(host, stack):
    bat = stack["batadv"]["ifname"]
    mesh = _vars(host)["smoke_mesh"]
    for other in (vm for vm in VMS if vm != _name(host)):
        address = mesh[other]["bat"]
        route = json.loads(host.check_output(f"ip -j route get {address}"))[0]
        assert route["dev"] == bat
        eventually(
            lambda address=address: host.run(f"ping -c 3 -W 2 -I {bat} {address}").rc == 0,
            f"ping {other} ({address}) across {bat}",
        )
