"""The gateway's static peers survive a restart of wgmesh-wg@ and a reboot (docs/gateway.md).

The role writes each domain's static peers to a root-only file in wg(8) config form, and the
unit loads it with `wg addconf` whenever it makes the device: never `setconf`/`syncconf`, which
would drop the worker's node peers. The file and the live `wg_peers` task take the same list
(mesh.yml's `static_peers` of each domain), rendered here with ansible-core's Templar from the
stack of tests/unit/roles/test_gateway_static_peers.py: another gateway declares the HA pair
at its endpoint, a pair member declares the others with no endpoint (wgmesh-ha sets it on
promotion). The loading itself, against wireguard-go:
tests/integration/roles/test_gateway_static_peers_restart.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from tests.support.templates import role_environment, trusted
from tests.unit.roles.test_gateway_static_peers import PUBKEYS, stack_expression, stack_variables

ROLE = Path(__file__).resolve().parents[3] / "roles" / "gateway"
PEERS_PATH = "/etc/wgmesh/gateway/wg-welt.peers.conf"


def task(file: str, name: str) -> dict:
    return next(t for t in yaml.safe_load((ROLE / "tasks" / file).read_text()) if t["name"] == name)


def templar_for(host: str, **extra) -> Templar:
    return Templar(loader=DataLoader(), variables=trusted({**stack_variables(host), **extra}))


def stack_of(host: str) -> dict:
    (domain,) = templar_for(host).template(trusted(stack_expression()))
    return domain


def wg_peers_input(host: str) -> list[dict]:
    """What run.yml's wg_peers task declares live on the device."""
    declare = task("run.yml", "Declare the other gateways as static peers of each domain")
    templar = templar_for(host, item=stack_of(host), **declare.get("vars", {}))
    return templar.template(trusted(declare["freifunk.wgmesh.wg_peers"]["peers"]))


def peers_file(host: str) -> str:
    write = task("configure.yml", "Write each domain's static peers for its WireGuard unit")
    context = {"ansible_managed": "managed", "item": stack_of(host)}
    return role_environment(ROLE).get_template(write["ansible.builtin.template"]["src"]).render(context)


def parse_peers(text: str) -> list[dict]:
    """[Peer] sections of a wg(8) config as wg_peers input: public_key, allowed_ips, endpoint or None."""
    peers = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line == "[Peer]":
            peers.append({"endpoint": None})
        elif line:
            key, value = (part.strip() for part in line.split("=", 1))
            field = {"PublicKey": "public_key", "AllowedIPs": "allowed_ips", "Endpoint": "endpoint"}[key]
            peers[-1][field] = [v.strip() for v in value.split(",")] if field == "allowed_ips" else value
    return peers


@pytest.mark.parametrize("host", ["gw2", "gw1a", "gw1b"])
def test_the_file_holds_exactly_what_wg_peers_declares(host):
    declared = wg_peers_input(host)
    assert declared, "the stack has static peers for this host"
    assert parse_peers(peers_file(host)) == declared


def test_another_gateway_loads_the_pair_at_its_endpoint():
    (peer,) = parse_peers(peers_file("gw2"))
    lladdr = stack_of("gw2")["peers"][0]["lladdr"]
    want = {"public_key": PUBKEYS["gw1a"]["wg-welt"], "allowed_ips": [f"{lladdr}/128"]}
    assert peer == want | {"endpoint": "gw1.example.net:40011"}


@pytest.mark.parametrize("member", ["gw1a", "gw1b"])
def test_a_pair_member_loads_the_others_without_endpoint(member):
    peers = parse_peers(peers_file(member))
    assert [p["public_key"] for p in peers] == [PUBKEYS["gw2"]["wg-welt"]]
    assert [p["endpoint"] for p in peers] == [None], "a standby must never send with the pair's key (docs/ha.md)"


def test_the_file_is_root_only_and_named_in_the_env_file_the_unit_reads():
    write = task("configure.yml", "Write each domain's static peers for its WireGuard unit")["ansible.builtin.template"]
    assert (write["owner"], write["group"], write["mode"]) == ("root", "root", "0600")
    item = {"ifs": {"wg": "wg-welt"}, "key_path": "/k", "port": 1, "lladdr": "fe80::1", "peers_path": PEERS_PATH}
    env = role_environment(ROLE).get_template("wg.env.j2").render(ansible_managed="managed", item=item)
    assert f"WG_PEERS_FILE={PEERS_PATH}" in env.splitlines()
    assert write["dest"] == "{{ item.peers_path }}"


def exec_lines(userspace: bool) -> list[str]:
    template = role_environment(ROLE).get_template("wgmesh-wg@.service.j2")
    unit = template.render(
        ansible_managed="managed", _gateway_conf_dir="/etc/wgmesh/gateway", gateway_wireguard_userspace=userspace
    )
    return [line for line in unit.splitlines() if re.match(r"Exec(Start|StartPost)=", line)]


@pytest.mark.parametrize("userspace", [True, False], ids=["wireguard-go", "kernel"])
def test_the_unit_loads_the_file_after_the_key_and_never_replaces_peers(userspace):
    lines = exec_lines(userspace)
    identity = next(i for i, line in enumerate(lines) if "private-key ${WG_KEY_FILE}" in line)
    loads = [i for i, line in enumerate(lines) if "addconf" in line]
    assert loads and min(loads) > identity, lines
    assert all("${WG_PEERS_FILE}" in lines[i] for i in loads), lines
    assert not any(re.search(r"\b(setconf|syncconf)\b", line) for line in lines), "would drop the worker's peers"
    # A failed load must not take the device, and so every node, down (a "-" prefix).
    assert all(lines[i].split("=", 1)[1].startswith("-") for i in loads), lines
    # Keys and allowed IPs first, which need no name lookup; the endpoints may not resolve at boot
    # (the unit runs before network.target): wg retries in the background, the unit goes on.
    without_endpoints, with_endpoints = (lines[i] for i in loads)
    assert "Endpoint" in without_endpoints and "/dev/stdin" in without_endpoints
    assert "WG_ENDPOINT_RESOLUTION_RETRIES=infinity" in with_endpoints and with_endpoints.rstrip().endswith(
        "${WG_PEERS_FILE}"
    )
