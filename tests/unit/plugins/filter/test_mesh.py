"""wg_gateways: the one reading of the per-gateway inventory variables."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.filter.mesh import wg_duplicates, wg_gateways


def test_hosts_without_identity_are_their_own_identity():
    hostvars = {"gw1": {"wgmesh_gateway_external_name": "gw1.example.net"}, "gw2": {"wgmesh_gateway_weight": 3}}
    assert wg_gateways(["gw1", "gw2"], hostvars) == {
        "gw1": {"hosts": ["gw1"], "weight": 1, "external_names": ["gw1.example.net"]},
        "gw2": {"hosts": ["gw2"], "weight": 3, "external_names": ["gw2"]},
    }


def test_an_ha_pair_is_one_identity_with_its_password():
    pair = {"wgmesh_gateway_identity": "gw1", "wgmesh_gateway_weight": "2"}
    hostvars = {"gw1a": pair, "gw1b": pair}
    got = wg_gateways(["gw1a", "gw1b"], hostvars, {"gw1": "s3cret", "other": "x"})
    assert got == {
        "gw1": {"hosts": ["gw1a", "gw1b"], "weight": 2, "external_names": ["gw1a", "gw1b"], "password": "s3cret"}
    }


def test_pair_members_with_different_weights_are_named():
    hostvars = {
        "gw1a": {"wgmesh_gateway_identity": "gw1"},
        "gw1b": {"wgmesh_gateway_identity": "gw1", "wgmesh_gateway_weight": 2},
    }
    with pytest.raises(AnsibleFilterError, match=r"^gw1b: wgmesh_gateway_weight 2 differs from 1 of gw1a"):
        wg_gateways(["gw1a", "gw1b"], hostvars)


@pytest.mark.parametrize("weight", [0, -1, "heavy", None])
def test_a_weight_that_is_not_positive_is_named(weight):
    with pytest.raises(AnsibleFilterError, match=r"^gw1: wgmesh_gateway_weight must be a positive number"):
        wg_gateways(["gw1"], {"gw1": {"wgmesh_gateway_weight": weight}})


def test_duplicates_are_named_once_each():
    assert wg_duplicates([40011, 40012, 40011, 40011, 40012]) == [40011, 40012]
    assert wg_duplicates(["a", "b"]) == []
