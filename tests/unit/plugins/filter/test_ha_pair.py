"""wg_ha_pair: the one reading of an HA pair's inventory variables, checked across both members."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.filter.ha import wg_ha_pair

VIPS = ["192.0.2.1/24", "2001:db8::1/64"]


def member(priority, **extra):
    return {
        "wgmesh_gateway_identity": "gw1",
        "wgmesh_ha_vips": VIPS,
        "wgmesh_ha_virtual_router_id": 51,
        "wgmesh_ha_priority": priority,
        "wgmesh_gateway_external_name": "gw1.example.net",
        **extra,
    }


def pair(**overrides_b):
    return {"gw1a": member(150), "gw1b": member(100, **overrides_b), "gw2": {}}


def test_a_pair_names_its_partner_and_addresses_per_family():
    got = wg_ha_pair("gw1b", ["gw1a", "gw1b", "gw2"], pair())
    assert got == {
        "name": "gw1",
        "members": ["gw1a", "gw1b"],
        "partner": "gw1a",
        "vips": {4: "192.0.2.1/24", 6: "2001:db8::1/64"},
        "virtual_router_id": 51,
        "priority": 100,
        "external_name": "gw1.example.net",
    }


def test_a_gateway_without_vips_is_no_member():
    assert wg_ha_pair("gw2", ["gw1a", "gw1b", "gw2"], pair()) == {}


def test_a_member_without_its_partner_is_named():
    with pytest.raises(AnsibleFilterError, match=r"^gw1a: an HA pair is two hosts .*'gw1'.* found \['gw1a'\]"):
        wg_ha_pair("gw1a", ["gw1a", "gw2"], pair())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"wgmesh_ha_vips": ["192.0.2.2/24", "2001:db8::1/64"]}, r"^gw1a: wgmesh_ha_vips .* differs .* partner gw1b"),
        ({"wgmesh_ha_virtual_router_id": 52}, r"^gw1a: wgmesh_ha_virtual_router_id 51 differs from 52 .* gw1b"),
        ({"wgmesh_ha_priority": 150}, r"^gw1a: wgmesh_ha_priority 150 equals its partner gw1b's"),
        ({"wgmesh_ha_vips": ["192.0.2.300/24"]}, r"^gw1b: wgmesh_ha_vips entry '192.0.2.300/24' is not an address"),
        ({"wgmesh_ha_vips": ["192.0.2.1"]}, r"^gw1b: wgmesh_ha_vips entry '192.0.2.1' needs its prefix length"),
        ({"wgmesh_ha_vips": ["fe80::1/64"]}, r"^gw1b: wgmesh_ha_vips entry 'fe80::1/64' is a loopback"),
        ({"wgmesh_ha_vips": ["192.0.2.1/24", "192.0.2.2/24"]}, r"^gw1b: wgmesh_ha_vips has more than one IPv4"),
        ({"wgmesh_ha_vips": "192.0.2.1/24"}, r"^gw1b: wgmesh_ha_vips must be a non-empty list"),
        ({"wgmesh_ha_virtual_router_id": 256}, r"^gw1b: wgmesh_ha_virtual_router_id must be an integer from 1 to 255"),
        ({"wgmesh_ha_priority": 255}, r"^gw1b: wgmesh_ha_priority must be an integer from 1 to 254"),
        # the other gateways' one static peer for the pair, and the nodes, reach it at this name: the
        # VIP's, never a member's own (a member's inventory name is the default of a single gateway)
        ({"wgmesh_gateway_external_name": None}, r"^gw1b: an HA member must state wgmesh_gateway_external_name"),
        (
            {"wgmesh_gateway_external_name": "gw1b.example.net"},
            r"^gw1a: wgmesh_gateway_external_name 'gw1.example.net' differs from 'gw1b.example.net' of .* gw1b",
        ),
    ],
)
def test_a_bad_pair_fails_naming_host_and_variable(override, message):
    with pytest.raises(AnsibleFilterError, match=message):
        wg_ha_pair("gw1a", ["gw1a", "gw1b"], pair(**override))


def test_an_external_address_must_be_one_of_the_pairs_virtual_addresses():
    hostvars = pair(wgmesh_gateway_external_name="192.0.2.7")
    hostvars["gw1a"]["wgmesh_gateway_external_name"] = "192.0.2.7"
    with pytest.raises(AnsibleFilterError, match=r"^gw1a: wgmesh_gateway_external_name '192.0.2.7' is an address"):
        wg_ha_pair("gw1a", ["gw1a", "gw1b"], hostvars)
    for address in ("192.0.2.1", "2001:db8::1"):
        hostvars["gw1a"]["wgmesh_gateway_external_name"] = hostvars["gw1b"]["wgmesh_gateway_external_name"] = address
        assert wg_ha_pair("gw1a", ["gw1a", "gw1b"], hostvars)["external_name"] == address
