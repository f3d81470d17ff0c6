"""An HA pair member's worker config names the state file wgmesh-ha writes (docs/ha.md).

Without `worker.ha_state_file` a standby sees no handshakes and removes every node of its
partner after `stale_after`. The role's defaults and vars are rendered with ansible-core's
Templar, as a play would, with an inventory that states a pair member and one that does not.
"""

from __future__ import annotations

from tests.support.templates import trusted
from tests.support.worker_unit import GATEWAY, worker_templar
from wgmesh.ha import state


def worker_config(**inventory) -> dict:
    return worker_templar(**{**GATEWAY, **inventory}).template(trusted("{{ _worker_config }}"))


def test_a_pair_member_names_the_state_file_wgmesh_ha_writes():
    config = worker_config(wgmesh_ha_vips=["192.0.2.1/24"])
    assert config["worker"]["ha_state_file"] == state.DEFAULT_PATH  # wgmesh-ha's default


def test_a_gateway_outside_a_pair_has_no_state_file():
    assert "ha_state_file" not in worker_config()["worker"]


def test_the_state_file_can_be_set():
    config = worker_config(worker_ha_state_file="/run/other/ha")
    assert config["worker"]["ha_state_file"] == "/run/other/ha"


GW2_KEY = "gP3VJnTTvnQut+z4O+m0N9RgMyXbgyUbUkF3E3TKX2w="
GW2 = {"gateway_public_keys": {"ffmuc_welt": GW2_KEY}, "gateway_endpoints": {"ffmuc_welt": "gw2.example.net:40011"}}


def test_static_peers_map_the_other_gateways_keys_to_the_endpoints_the_gateway_role_published():
    # wgmesh-ha applies them on promotion when the partner taught it none (docs/ha.md)
    config = worker_config(groups={"gateways": ["gw1a", "gw2"]}, hostvars={"gw1a": {}, "gw2": GW2})
    assert config["worker"]["static_peers"] == {GW2_KEY: "gw2.example.net:40011"}


def test_a_gateway_that_published_no_endpoint_is_still_protected():
    gw2 = {"gateway_public_keys": {"ffmuc_welt": GW2_KEY}}
    config = worker_config(groups={"gateways": ["gw1a", "gw2"]}, hostvars={"gw1a": {}, "gw2": gw2})
    assert config["worker"]["static_peers"] == {GW2_KEY: None}
