"""The gateway role's nftables template: port 80 on a gateway that is also the broker.

The uplink HTTP server answers only on the wg-<dom> link-local addresses, so a plain
gateway drops port 80 on every other interface. On an all-in-one host (groups gateways
and broker, as the lab's lab-gw1) port 80 on the WAN side is the broker's key exchange:
dropping it there cuts every node off its registration.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from ansible.plugins.filter.core import FilterModule
from ansible.plugins.test.core import TestModule as AnsibleTests  # not collected by pytest

ROLE = Path(__file__).resolve().parents[3] / "roles" / "gateway"
STACK = [{"port": 40011, "ifs": {"wg": "wg-welt"}}]


def render_nft(**variables) -> str:
    env = jinja2.Environment(
        # autoescape off: the output is an nftables file, as Ansible renders it (no HTML).
        loader=jinja2.FileSystemLoader(ROLE / "templates"),
        trim_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701
    )
    # Ansible's filters and tests (to_json, search) where Jinja has none of its own.
    for name, function in FilterModule().filters().items():
        env.filters.setdefault(name, function)
    for name, function in AnsibleTests().tests().items():
        env.tests.setdefault(name, function)
    context = {
        "ansible_managed": "managed",
        "_gateway_nft_table": "wgmesh_gateway",
        "_gateway_stack": STACK,
        "gateway_uplink_http_port": 80,
        "_gateway_mqtt_ports": [],
        "_gateway_mqtt_sources_all": [],
        "gateway_metrics_ports": [],
        "gateway_metrics_sources": [],
        "_gateway_broker_group": "broker",
        "inventory_hostname": "gw1",
        "groups": {"gateways": ["gw1", "gw2"], "broker": ["broker1"]},
        **variables,
    }
    return env.get_template("gateway.nft.j2").render(context)


def test_plain_gateway_drops_port_80_off_its_wireguard_links():
    table = render_nft()
    assert 'tcp dport 80 iifname { "wg-welt" } accept' in table
    assert 'tcp dport 80 iifname != "lo" drop' in table


def test_gateway_that_is_also_the_broker_leaves_port_80_open_for_the_key_exchange():
    table = render_nft(groups={"gateways": ["gw1", "gw2"], "broker": ["gw1"]})
    assert 'tcp dport 80 iifname { "wg-welt" } accept' in table
    assert "tcp dport 80 iifname" + ' != "lo" drop' not in table
