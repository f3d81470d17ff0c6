"""wg_ha_mac: the MAC both members of an HA pair give bat-/br-/vx-<dom> (docs/gateway.md)."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.filter.ha import wg_ha_mac

# The vector docs/gateway.md states: md5 of "gw1\nffmuc_welt\nbat\n" starts a1027d984eb7;
# a1 with the multicast bit cleared and the locally administered bit set is a2.
VECTORS = [
    ("gw1", "ffmuc_welt", "bat", "a2:02:7d:98:4e:b7"),
    ("gw1", "ffmuc_welt", "br", "7a:56:35:17:d6:7b"),
    ("gw1", "ffmuc_welt", "vx", "c2:2b:0b:41:99:8c"),
]


@pytest.mark.parametrize(("identity", "domain", "kind", "mac"), VECTORS)
def test_vectors(identity, domain, kind, mac):
    assert wg_ha_mac(identity, domain, kind) == mac


@pytest.mark.parametrize("identity", ["gw1", "gw2", "a", "x" * 64])
@pytest.mark.parametrize("domain", ["ffmuc_welt", "ffmuc_uml", "d"])
@pytest.mark.parametrize("kind", ["bat", "br", "vx"])
def test_always_a_locally_administered_unicast_address(identity, domain, kind):
    first = int(wg_ha_mac(identity, domain, kind)[:2], 16)
    assert first & 0x01 == 0, "multicast bit set"
    assert first & 0x02 == 0x02, "not locally administered"


def test_each_pair_domain_and_interface_gets_its_own():
    macs = {
        wg_ha_mac(i, d, k) for i in ("gw1", "gw2") for d in ("ffmuc_welt", "ffmuc_uml") for k in ("bat", "br", "vx")
    }
    assert len(macs) == 12


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("", "ffmuc_welt", "bat"), "identity"),
        (("gw1", "", "bat"), "domain"),
        (("gw1", "ffmuc_welt", "wg"), "bat, br, vx"),
        ((None, "ffmuc_welt", "bat"), "identity"),
    ],
)
def test_bad_input_is_named(args, words):
    with pytest.raises(AnsibleFilterError, match=words):
        wg_ha_mac(*args)
