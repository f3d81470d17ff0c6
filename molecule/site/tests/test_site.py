"""site.yml on inventories/example: a node key POSTed to the broker reaches both
gateways as a WireGuard peer with its derived allowed IP, a route and an
all-zero FDB entry; a bad key is refused; a gateway's MQTT user cannot
publish a key. The containers are reached with testinfra's podman backend."""

import json
import os
import shlex
import sys
from functools import partial
from pathlib import Path

import pytest

from wgmesh.derive import lladdr_from_key

# The repository root: tests.support is shared by the tests, bench/ and Molecule.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.support.molecule import INVENTORY, example_host_vars, example_vars, http, podman_host, podman_hosts
from tests.support.procs import wait_until

DOMAINS = example_vars()["wgmesh_domains"]
SECRETS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets"
GATEWAYS = INVENTORY.get_hosts("gateways")
testinfra_hosts = podman_hosts("broker")


def _post(host, version, domain, key):
    return http(host, f"http://localhost/api/{version}/wg/key/exchange", {"domain": domain, "public_key": key})


def _allowed_ips_with(gateway, ifname, key):
    output = gateway.check_output(f"wg show {ifname} allowed-ips")
    return output if key in output else None


@pytest.fixture(scope="module")
def node_key():
    return podman_host(GATEWAYS[0]).check_output("wg genkey | wg pubkey")


@pytest.mark.parametrize("domain", DOMAINS, ids=[d["name"] for d in DOMAINS])
def test_a_posted_key_is_a_peer_route_and_fdb_entry_on_both_gateways(host, node_key, domain):
    status, text = _post(host, "v2", domain["name"], node_key)
    assert status == 200, text
    endpoint = json.loads(text)["Endpoint"]
    assert endpoint["Address"] in {example_host_vars(name)["wgmesh_gateway_external_name"] for name in GATEWAYS}
    assert endpoint["Port"] == str(domain["port"])
    lladdr = str(lladdr_from_key(node_key))
    suffix = domain["name"].removeprefix(domain["prefix"])
    for name in GATEWAYS:
        gateway = podman_host(name)
        # The workers apply keys asynchronously: poll until the peer is there.
        peers = wait_until(
            partial(_allowed_ips_with, gateway, f"wg-{suffix}", node_key), 60, 1, f"{node_key} on {name}"
        )
        assert f"{node_key}\t{lladdr}/128" in peers
        assert lladdr in gateway.check_output(f"ip -6 route show dev wg-{suffix}")
        fdb = gateway.check_output(f"bridge fdb show dev vx-{suffix}")
        assert f"00:00:00:00:00:00 dst {lladdr}" in fdb


def test_a_bad_key_is_refused(host):
    status, text = _post(host, "v2", DOMAINS[0]["name"], "not-a-wireguard-key")
    assert status == 400, text
    status, text = _post(host, "v1", "ffexample_nowhere", "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=")
    assert status == 400, text


def test_a_gateways_mqtt_user_cannot_publish_a_key():
    name = GATEWAYS[0]
    password = (SECRETS / f"mqtt-{name}").read_text().strip()
    topic = f"wireguard/{DOMAINS[0]['name']}/all"
    argv = ["mosquitto_pub", "-V", "mqttv5", "-h", "mqtt.example.net", "-q", "1", "-t", topic]
    argv += ["-m", "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "-u", name, "-P", password]
    mqtt = podman_host(INVENTORY.get_hosts("mqtt")[0])
    result = mqtt.run(shlex.join(argv))
    assert "Publish 1 failed: Not authorized" in result.stderr, result.stdout + result.stderr
