"""An HA member's bat-/br-/vx-<dom> get the pair's MACs; a single gateway's .netdev files do not change.

After a takeover a node `batctl ping`s its gateway's originator (vx-<dom>'s MAC, the primary
batman-adv interface) and its clients reach the gateway on br-<dom>: both members must use the
same addresses (docs/gateway.md, "HA pairs"). networkd picks a MAC from the machine id when
MACAddress= is unset, so without it the members differ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.templates import gateway_domain, role_environment

ROLE = Path(__file__).resolve().parents[3] / "roles" / "gateway"
MACS = {"vx": "c2:2b:0b:41:99:8c", "bat": "a2:02:7d:98:4e:b7", "br": "7a:56:35:17:d6:7b"}


def render(name: str, macs: dict) -> str:
    context = {
        "ansible_managed": "managed",
        "item": [gateway_domain(macs=macs), {}],
        "gateway_batman_routing_algorithm": "batman-v",
        "gateway_batman_originator_interval": 5,
        "gateway_batman_hop_penalty": 250,
    }
    return role_environment(ROLE).get_template(name).render(context)


@pytest.mark.parametrize("kind", ["vx", "bat", "br"])
def test_an_ha_member_states_the_pairs_mac_in_the_netdev(kind):
    text = render(f"{kind}.netdev.j2", MACS)
    netdev = text.split("[NetDev]\n", 1)[1].split("\n\n", 1)[0]
    assert f"MACAddress={MACS[kind]}" in netdev.splitlines()


@pytest.mark.parametrize("kind", ["vx", "bat", "br"])
def test_a_single_gateway_has_no_mac_line(kind):
    assert "MACAddress" not in render(f"{kind}.netdev.j2", {})
