"""The gateways' static peers around an HA pair, through the gateway role's own tasks.

ansible-playbook runs the role's preflight, key and mesh tasks (tasks_from) for the same three
gateways as test_gateway_ha_keys.py (gw1a and gw1b a pair, gw2 single; connection local) and
writes what the wg_peers task would declare, per host. A pair member's static peers carry no
endpoint (a standby must never send with the pair's key; wgmesh-ha sets it on promotion), the
single gateway has one static peer for the pair, at the pair's name, and every gateway publishes
the endpoints the others' wgmesh-ha applies (fact gateway_endpoints; docs/ha.md).
"""

from __future__ import annotations

import json

import pytest

from tests.integration.roles.test_gateway_ha_keys import PLAY, Gateways

MESH_PLAY = [
    {
        **PLAY[0],
        "tasks": [
            *PLAY[0]["tasks"],  # preflight, keys, the public keys to a file
            {"ansible.builtin.include_role": {"name": "freifunk.wgmesh.gateway", "tasks_from": "mesh"}},
            {
                "ansible.builtin.copy": {
                    "content": "{{ {'stack': _gateway_stack, 'endpoints': gateway_endpoints} | to_json }}",
                    "dest": "{{ out }}.{{ inventory_hostname }}",
                    "mode": "0600",
                },
                "delegate_to": "localhost",
                "check_mode": False,
                "diff": False,
                "changed_when": False,
            },
        ],
    }
]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    """One run for the module's tests: each ansible-playbook run takes half a minute here."""
    tmp_path = tmp_path_factory.mktemp("mesh")
    gateways = Gateways(tmp_path, MESH_PLAY)
    rc, output, keys = gateways.play()
    assert rc == 0, output[-4000:]
    out = tmp_path / f"pubkeys-{gateways.runs}.json"
    return keys, {h: json.loads(out.with_name(f"{out.name}.{h}").read_text()) for h in ("gw1a", "gw1b", "gw2")}


def peers_of(facts: dict, wg: str) -> dict[str, dict]:
    (domain,) = [d for d in facts["stack"] if d["ifs"]["wg"] == wg]
    return {p["host"]: p for p in domain["peers"]}


def test_a_pair_member_declares_the_other_gateways_without_an_endpoint(mesh):
    keys, facts = mesh
    for member in ("gw1a", "gw1b"):
        peers = peers_of(facts[member], "wg-welt")
        assert list(peers) == ["gw2"], "a member is no peer of its partner"
        assert peers["gw2"]["public_key"] == keys["gw2"]["wg-welt"]
        assert peers["gw2"]["endpoint"] is None  # left to wgmesh-ha's promotion


def test_a_single_gateway_has_one_static_peer_for_the_pair_at_the_pairs_name(mesh):
    keys, facts = mesh
    for wg, port in (("wg-welt", 40011), ("wg-uml", 40012)):
        peers = list(peers_of(facts["gw2"], wg).values())
        assert len(peers) == 1, peers
        assert peers[0]["public_key"] == keys["gw1a"][wg] == keys["gw1b"][wg]
        assert peers[0]["endpoint"] == f"gw1.example.net:{port}"  # the VIP's name, not a member's


def test_every_gateway_publishes_the_endpoints_the_others_reach_it_at(mesh):
    _keys, facts = mesh
    pair = {"ffmuc_welt": "gw1.example.net:40011", "ffmuc_uml": "gw1.example.net:40012"}
    assert facts["gw1a"]["endpoints"] == facts["gw1b"]["endpoints"] == pair
    assert facts["gw2"]["endpoints"] == {"ffmuc_welt": "gw2:40011", "ffmuc_uml": "gw2:40012"}
