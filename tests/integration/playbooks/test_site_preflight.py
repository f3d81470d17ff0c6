"""site.yml's preflight play over inventories/example, run by ansible-playbook on this host.

Every host of the example inventory is this host (connection local), so the
roles' checks run for real; only the kernel-module check is told that this
host has no batman-adv and no WireGuard module (the container switches). A
wrong value fails the whole run before the first host-changing play, with a
message naming the host and the variable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "inventories" / "example"
HOSTS = {
    "mqtt": ["mqtt.example.net"],
    "broker": ["broker.example.net"],
    "gateways": ["gw1.example.net", "gw2.example.net"],
}
KEY = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="


def _domains(**change) -> list[dict]:
    domains = yaml.safe_load((EXAMPLE / "group_vars" / "all" / "wgmesh.yml").read_text())["wgmesh_domains"]
    domains[1].update(change)
    return domains


def _run(tmp_path: Path, playbook: str, group_vars: dict | None = None, host_vars: dict | None = None, *extra: str):
    """ansible-playbook with a copy of the example inventory, changed as given, every host local."""
    inventory = tmp_path / "example"
    shutil.copytree(EXAMPLE, inventory)
    local = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "wgmesh_wireguard_userspace": True,
        "gateway_batman": False,
        "wgmesh_secrets_dir": str(tmp_path / "secrets"),
    }
    # Files sort after the example's own: the later file wins.
    (inventory / "group_vars" / "all" / "zz-test.yml").write_text(yaml.safe_dump({**local, **(group_vars or {})}))
    for host, variables in (host_vars or {}).items():
        path = inventory / "host_vars" / f"{host}.yml"
        current = yaml.safe_load(path.read_text()) if path.exists() else {}
        path.write_text(yaml.safe_dump({**(current or {}), **variables}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    playbook_command = str(Path(sys.executable).parent / "ansible-playbook")
    command = [playbook_command, "-i", str(inventory), str(ROOT / playbook), *extra]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False, cwd=tmp_path)


def test_the_example_inventory_passes(tmp_path):
    result = _run(tmp_path, "playbooks/preflight.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout and "changed=1" not in result.stdout
    # One generated password per broker host and gateway identity, where the broker and workers read them.
    assert sorted(p.name for p in (tmp_path / "secrets").iterdir()) == [
        "mqtt-broker.example.net",
        "mqtt-gw1.example.net",
        "mqtt-gw2.example.net",
    ]


def test_site_yml_checks_the_whole_inventory_first():
    plays = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    assert [play["ansible.builtin.import_playbook"] for play in plays] == [
        "preflight.yml",
        "mqtt.yml",
        "batman-adv.yml",  # the DKMS module before the gateways make their first interface
        "gateways.yml",
        "broker.yml",
    ]


@pytest.mark.parametrize(
    ("group_vars", "host_vars", "expected"),
    [
        pytest.param(
            {"wgmesh_domains": _domains(name="ffexample_stadt_und_land")},
            None,
            "ffexample_stadt_und_land",
            id="interface-name-over-15-bytes",
        ),
        pytest.param(
            {"wgmesh_domains": _domains(port=40011)},
            None,
            "gw1.example.net: gateway_domains: duplicate",
            id="duplicate-listen-port",
        ),
        pytest.param(
            {"wgmesh_domains": _domains(name="ffother_stadt")},
            None,
            "gw1.example.net: gateway_domains[1] needs name, prefix",
            id="domain-without-its-prefix",
        ),
        pytest.param(
            None,
            {"broker.example.net": {"broker_blocklist": {"ffexample_dorf": [KEY]}}},
            "broker.example.net: broker_blocklist.ffexample_dorf: the domain must be one of",
            id="unknown-domain",
        ),
        pytest.param(
            None,
            {"broker.example.net": {"broker_allowlist": {"ffexample_welt": ["not-a-key"]}}},
            "broker.example.net: broker_allowlist.ffexample_welt:",
            id="malformed-key",
        ),
        pytest.param(
            None,
            {"broker.example.net": {"broker_workers": {"gw1.example.net": {"weight": 1}}}},
            "broker.example.net: gateway gw2.example.net (group gateways) is missing from broker_workers",
            id="gateway-missing-from-workers",
        ),
        pytest.param(
            None,
            {"gw2.example.net": {"wgmesh_gateway_external_name": "gw1.example.net"}},
            "inventory: wgmesh_gateway_external_name ['gw1.example.net'] is used by more than one gateway",
            id="external-name-twice",
        ),
        pytest.param(
            None,
            {"gw1.example.net": {"gateway_underlay_mtu": 1400}},
            "gw1.example.net: gateway_underlay_mtu 1400 (ipv6):",
            id="underlay-mtu-too-small",
        ),
        pytest.param(
            None,
            {"gw2.example.net": {"wgmesh_gateway_weight": 0}},
            "gw2.example.net: wgmesh_gateway_weight must be a positive number",
            id="weight-not-positive",
        ),
        pytest.param(
            None,
            {"gw1.example.net": {"wgmesh_ha_vips": ["192.0.2.10/24"], "wgmesh_ha_virtual_router_id": 51}},
            "gw1.example.net: an HA pair is two hosts with the same wgmesh_gateway_identity",
            id="ha-member-without-partner",
        ),
        pytest.param(
            {
                "wgmesh_gateway_identity": "gw1",
                "wgmesh_ha_vips": ["192.0.2.10/24"],
                "wgmesh_ha_virtual_router_id": 51,
                "wgmesh_ha_priority": 100,
            },
            None,
            "wgmesh_ha_priority 100 equals its partner",
            id="ha-pair-equal-priorities",
        ),
    ],
)
def test_a_wrong_value_stops_site_yml_before_any_host_changes(tmp_path, group_vars, host_vars, expected):
    # --check as a second guard: were the preflight to pass, nothing on this host changes either.
    result = _run(tmp_path, "site.yml", group_vars, host_vars, "--check")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert expected in output, output
    assert "PLAY [Mosquitto" not in output, output
