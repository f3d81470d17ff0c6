"""An MTU change must be a reload of networkd, never a recreated link.

The role deletes a link whose .netdev changed, because networkd 252 ignores a changed .netdev
on an existing link (docs/gateway.md); a recreated link loses the worker's FDB entries for a
moment. networkd applies `[Link] MTUBytes=` of a .network to the existing link on reload, so
the MTU belongs there alone: rendering every template with two MTU sets must change the
.network files and leave every .netdev as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.templates import gateway_domain, role_environment

ROLE = Path(__file__).resolve().parents[3] / "roles" / "gateway"
NETDEVS = sorted(p.name for p in (ROLE / "templates").glob("*.netdev.j2"))
NETWORKS = sorted(p.name for p in (ROLE / "templates").glob("*.network.j2"))
DOMAIN = gateway_domain(peers=[{"host": "gw2", "lladdr": "fe80::2"}])
MTUS_1500 = {"wireguard": 1420, "vxlan": 1350, "batman": 1290}
MTUS_1480 = {"wireguard": 1400, "vxlan": 1330, "batman": 1270}


def render(name: str, mtus: dict) -> str:
    env = role_environment(ROLE)
    context = {
        "ansible_managed": "managed",
        "item": [DOMAIN, {}],
        "_gateway_mtus": mtus,
        "gateway_batman": True,
        "gateway_batman_routing_algorithm": "batman-v",
        "gateway_batman_originator_interval": 5,
        "gateway_batman_hop_penalty": 250,
    }
    return env.get_template(name).render(context)


def test_the_templates_are_found():
    assert {"vx.netdev.j2", "bat.netdev.j2", "br.netdev.j2"} <= set(NETDEVS)
    assert {"wg.network.j2", "vx.network.j2", "bat.network.j2", "br.network.j2"} <= set(NETWORKS)


@pytest.mark.parametrize("name", NETDEVS)
def test_an_mtu_change_leaves_every_netdev_as_it_was(name):
    assert render(name, MTUS_1500) == render(name, MTUS_1480), f"{name} has an MTU: a change would recreate the link"


@pytest.mark.parametrize("name", NETWORKS)
def test_each_network_file_sets_its_link_mtu(name):
    kind = {"wg": "wireguard", "vx": "vxlan", "bat": "batman", "br": "batman"}[name.split(".")[0]]
    assert f"[Link]\nMTUBytes={MTUS_1480[kind]}\n" in render(name, MTUS_1480)
