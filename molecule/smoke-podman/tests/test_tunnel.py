"""The smoke scenario's WireGuard tunnel works, between real wireguard-go processes."""

import os

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

INTERFACE = "wg-smoke"
KEY_PATH = "/etc/wireguard/wg-smoke.key"

# Read Molecule's inventory once, then talk to the containers with testinfra's
# podman backend: its ansible backend does not know the podman connection and
# would run every command as an Ansible ad-hoc task (seconds each).
INVENTORY = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
CONTAINERS = INVENTORY.get_hosts("wg_smoke")
testinfra_hosts = [f"podman://{name}" for name in CONTAINERS]


def _name(host):
    return host.backend.name


def _tunnel_ip(name):
    return INVENTORY.get_variables(name)["smoke_tunnel_ip"]


@pytest.fixture
def peers(host):
    """The other containers, by name, with a testinfra host for each."""
    others = {name: testinfra.get_host(f"podman://{name}") for name in CONTAINERS if name != _name(host)}
    assert others, "the scenario needs at least two containers"
    return others


def _per_peer(host, what):
    """`wg show <if> <what>` as {public key: value}."""
    output = host.check_output(f"wg show {INTERFACE} {what}")
    return dict(line.split("\t", 1) for line in output.splitlines())


def test_wireguard_go_runs_the_interface(host):
    assert host.service(f"{INTERFACE}.service").is_running
    assert host.process.filter(comm="wireguard-go"), "no wireguard-go process"
    assert host.socket(f"unix:///var/run/wireguard/{INTERFACE}.sock").is_listening
    assert host.interface(INTERFACE, "inet").addresses == [_tunnel_ip(_name(host))]


def test_private_key_is_private_and_matches_the_interface(host):
    key = host.file(KEY_PATH)
    assert key.user == "root"
    assert key.mode == 0o600
    derived = host.check_output(f"wg pubkey < {KEY_PATH}")
    assert host.check_output(f"wg show {INTERFACE} public-key") == derived


def test_the_other_containers_are_the_only_peers(host, peers):
    allowed = _per_peer(host, "allowed-ips")
    expected = {
        peer.check_output(f"wg show {INTERFACE} public-key"): f"{_tunnel_ip(name)}/32" for name, peer in peers.items()
    }
    assert allowed == expected


def test_ping_crosses_the_tunnel(host, peers):
    for name, peer in peers.items():
        key = peer.check_output(f"wg show {INTERFACE} public-key")
        ping = host.run(f"ping -c 3 -W 2 -I {INTERFACE} {_tunnel_ip(name)}")
        assert ping.rc == 0, ping.stdout + ping.stderr
        # The replies came through WireGuard: a handshake happened and the
        # peer's counters show traffic both ways.
        assert int(_per_peer(host, "latest-handshakes")[key]) > 0
        received, sent = (int(n) for n in _per_peer(host, "transfer")[key].split("\t"))
        assert received > 0
        assert sent > 0
