"""The gateway role's static peers when an HA pair shares one key per domain (docs/ha.md).

The expression of mesh.yml's "Work out each domain's addresses and static peers" is rendered
with ansible-core's Templar, as in a play. A pair's members answer with one key: another
gateway gets one peer for the pair (wg_peers refuses a key listed twice), at the endpoint the
pair published (its virtual address's name), and a member gets no peer for its partner
(WireGuard ignores a peer with the device's own key) and no endpoint for the others (a standby
must never send with the pair's key; wgmesh-ha sets it on promotion). The published endpoints
themselves: tests/integration/roles/test_gateway_ha_static_peers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from tests.support.templates import trusted

ROLE = Path(__file__).resolve().parents[3] / "roles" / "gateway"
PAIR_KEY = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
GW2_KEY = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
PUBKEYS = {"gw1a": {"wg-welt": PAIR_KEY}, "gw1b": {"wg-welt": PAIR_KEY}, "gw2": {"wg-welt": GW2_KEY}}
HOSTVARS = {
    "gw1a": {"gateway_endpoints": {"ffmuc_welt": "gw1.example.net:40011"}},
    "gw1b": {"gateway_endpoints": {"ffmuc_welt": "gw1.example.net:40011"}},
    "gw2": {"gateway_endpoints": {"ffmuc_welt": "gw2.example.net:40011"}},
}
PAIRS = {"gw1a": {"name": "gw1", "partner": "gw1b"}, "gw1b": {"name": "gw1", "partner": "gw1a"}, "gw2": {}}
DOMAIN = {"name": "ffmuc_welt", "mode": "ffmuc", "port": 40011, "ifs": {"wg": "wg-welt"}}


def stack_expression() -> str:
    tasks = yaml.safe_load((ROLE / "tasks" / "mesh.yml").read_text())
    task = next(t for t in tasks if t["name"] == "Work out each domain's addresses and static peers")
    return task["ansible.builtin.set_fact"]["_gateway_stack"]


def stack_variables(host: str) -> dict:
    """What mesh.yml's stack expression reads, as the role has it on HOST."""
    return {
        "inventory_hostname": host,
        "hostvars": HOSTVARS,
        "_gateway_others": [h for h in HOSTVARS if h != host],
        "_gateway_domains": [DOMAIN],
        "_gateway_pubkeys": PUBKEYS,
        "_gateway_pair": PAIRS[host],
    }


def peers_of(host: str) -> list[dict]:
    templar = Templar(loader=DataLoader(), variables=trusted(stack_variables(host)))
    (domain,) = templar.template(trusted(stack_expression()))
    return domain["peers"]


def test_another_gateway_gets_one_peer_for_the_pair():
    peers = peers_of("gw2")
    assert [p["public_key"] for p in peers] == [PAIR_KEY]
    assert peers[0]["endpoint"] == "gw1.example.net:40011"


@pytest.mark.parametrize("member", ["gw1a", "gw1b"])
def test_a_member_has_no_peer_for_its_partner_and_no_endpoint_for_the_others(member):
    peers = peers_of(member)
    assert [p["public_key"] for p in peers] == [GW2_KEY]
    assert peers[0]["endpoint"] is None  # wg_peers leaves it alone
