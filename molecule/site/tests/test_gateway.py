"""The gateway role's interfaces, static peers, uplink check and nftables table, on the two gateways.

Real parts: wireguard-go, systemd-networkd 252, busybox httpd and nftables in Debian 12
containers. Not here (no kernel modules in containers): kernel WireGuard and batman-adv;
the VM tier covers them.
"""

import ipaddress
import json
import sys
from pathlib import Path

import pytest

from wgmesh import derive

# The repository root: tests.support is shared by the tests, bench/ and Molecule.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.support.molecule import INVENTORY, example_vars, podman_host, podman_hosts, uplink_status

GATEWAYS = INVENTORY.get_hosts("gateways")
testinfra_hosts = podman_hosts("gateways")

EXAMPLE = example_vars()
DOMAINS = EXAMPLE["wgmesh_domains"]
# Interface names and MTUs as the collection derives them (docs/mtu.md: a 1500 IPv6 underlay).
IFS = {d["name"]: derive.interface_names(d["name"], [d["prefix"]]) for d in DOMAINS}
MTU = {"wg": 1420, "vx": 1350, "br": 1318}


def _others(host):
    return [name for name in GATEWAYS if name != host.backend.name]


def _public_key(host, wg):
    return host.check_output(f"wg show {wg} public-key")


def _lladdr(key):
    return str(derive.lladdr_from_key(key, "ffmuc"))


@pytest.mark.parametrize("domain", [d["name"] for d in DOMAINS])
def test_interfaces_exist_with_their_mtus(host, domain):
    for kind, mtu in MTU.items():
        link = json.loads(host.check_output(f"ip -j link show dev {IFS[domain][kind]}"))[0]
        assert link["mtu"] == mtu, (IFS[domain][kind], link["mtu"])


@pytest.mark.parametrize("domain", [d["name"] for d in DOMAINS])
def test_wireguard_has_its_port_key_file_and_only_its_lladdr(host, domain):
    wg = IFS[domain]["wg"]
    port = next(d["port"] for d in DOMAINS if d["name"] == domain)
    assert host.check_output(f"wg show {wg} listen-port") == str(port)
    key = host.file(f"/etc/wireguard/{wg}.key")
    assert (key.mode, key.user) == (0o600, "root")
    addresses = json.loads(host.check_output(f"ip -j -6 address show dev {wg}"))[0]["addr_info"]
    assert [ipaddress.ip_address(a["local"]) for a in addresses] == [
        ipaddress.ip_address(_lladdr(_public_key(host, wg)))
    ]


@pytest.mark.parametrize("domain", [d["name"] for d in DOMAINS])
def test_vxlan_runs_from_the_lladdr_over_wireguard(host, domain):
    ifs = IFS[domain]
    seed = next(d["seed"] for d in DOMAINS if d["name"] == domain)
    info = json.loads(host.check_output(f"ip -d -j link show dev {ifs['vx']}"))[0]["linkinfo"]["info_data"]
    assert info["id"] == derive.vni_from_seed(seed, "ffmuc")
    assert info["port"] == 8472
    assert ipaddress.ip_address(info["local6"]) == ipaddress.ip_address(_lladdr(_public_key(host, ifs["wg"])))
    assert info["link"] == ifs["wg"]


@pytest.mark.parametrize("domain", [d["name"] for d in DOMAINS])
def test_other_gateways_are_static_peers_with_route_and_fdb(host, domain):
    ifs = IFS[domain]
    peers = {}
    for line in host.check_output(f"wg show {ifs['wg']} dump").splitlines()[1:]:
        fields = line.split("\t")
        peers[fields[0]] = {"endpoint": fields[2], "allowed_ips": fields[3]}
    routes = json.loads(host.check_output(f"ip -j -6 route show dev {ifs['wg']}"))
    fdb = json.loads(host.check_output(f"bridge -j fdb show dev {ifs['vx']}"))
    for other in _others(host):
        key = _public_key(podman_host(other), ifs["wg"])
        lladdr = _lladdr(key)
        assert key in peers, f"{other} is no peer on {ifs['wg']}"
        assert peers[key]["allowed_ips"] == f"{lladdr}/128"
        assert peers[key]["endpoint"].endswith(f":{next(d['port'] for d in DOMAINS if d['name'] == domain)}")
        assert any(ipaddress.ip_address(r["dst"].split("/")[0]) == ipaddress.ip_address(lladdr) for r in routes)
        assert any(
            e["mac"] == "00:00:00:00:00:00" and ipaddress.ip_address(e.get("dst", "::")) == ipaddress.ip_address(lladdr)
            for e in fdb
        ), fdb


@pytest.mark.parametrize("domain", [d["name"] for d in DOMAINS])
def test_uplink_check_answers_200_over_wireguard(host, domain):
    """What a Gluon node asks: GET http://[<gateway lladdr>%wg-<dom>]/, here from the other gateway."""
    wg = IFS[domain]["wg"]
    for other in _others(host):
        lladdr = _lladdr(_public_key(podman_host(other), wg))
        assert uplink_status(host, lladdr, wg) == 200


def test_uplink_server_listens_only_on_the_lladdrs(host):
    """On a port of its own (8180), so that a broker may hold port 80 of every address (all-in-one)."""
    listeners = host.check_output("ss -Htln sport = :8180")
    assert "*:8180" not in listeners and "0.0.0.0:8180" not in listeners and "[::]:8180" not in listeners, listeners
    for domain in DOMAINS:
        assert f"]%{IFS[domain['name']]['wg']}:8180" in listeners, listeners


def test_nftables_table_of_its_own(host):
    table = host.check_output("nft list table inet wgmesh_gateway")
    assert f"udp dport {{ {', '.join(str(d['port']) for d in DOMAINS)} }} accept" in table
    assert 'tcp dport 8180 iifname != "lo" drop' in table
    for domain in DOMAINS:
        wg = IFS[domain["name"]]["wg"]
        lladdr = _lladdr(_public_key(host, wg))
        assert f'iifname "{wg}" ip6 daddr {lladdr} tcp dport 80 dnat ip6 to [{lladdr}]:8180' in table
    port, sources = EXAMPLE["wgmesh_metrics_port"], EXAMPLE["wgmesh_metrics_sources"]
    assert f"tcp dport {port} ip saddr {sources[0]} accept" in table
    assert f"tcp dport {port} drop" in table


def test_networkd_leaves_foreign_routes_alone(host):
    conf = host.file("/etc/systemd/networkd.conf.d/60-wgmesh-gateway.conf").content_string
    assert "ManageForeignRoutes=no" in conf and "ManageForeignRoutingPolicyRules=no" in conf
