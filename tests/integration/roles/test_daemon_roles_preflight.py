"""The broker and worker roles' preflight, run by ansible-playbook on this host.

A wrong inventory value fails before any host changes, with a message that
names the host and the variable; a good inventory passes. Only the
`<role>_preflight` tag runs (no package, user or file is touched); the
password lookup writes into a temporary secrets directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
KEY_A = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
KEY_B = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
DOMAIN = {"name": "ffmuc_welt", "prefix": "ffmuc_", "seed": "1f0b", "port": 40011, "mode": "ffmuc"}


def _inventory(tmp_path: Path, host_vars: dict | None = None, **group_vars) -> Path:
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = {name: {**local, **(host_vars or {}).get(name, {})} for name in ("gw1", "gw2")}
    inventory = {
        "all": {
            "vars": {
                "wgmesh_domains": [DOMAIN],
                "wgmesh_mqtt": {"host": "localhost", "port": 1883},
                "wgmesh_secrets_dir": str(tmp_path / "secrets"),
                **group_vars,
            },
            "children": {
                "gateways": {"hosts": hosts},
                "broker": {"hosts": {"broker1": local}},
            },
        }
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def _preflight(tmp_path: Path, role: str, hosts: str, inventory: Path, *extra: str) -> subprocess.CompletedProcess:
    playbook = tmp_path / "play.yml"
    play = {"name": "Preflight", "hosts": hosts, "gather_facts": False, "roles": [f"freifunk.wgmesh.{role}"]}
    playbook.write_text(yaml.safe_dump([play]))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook)]
    return subprocess.run(
        [*command, "--tags", f"{role}_preflight", *extra],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_good_inventory_passes_both_preflights(tmp_path):
    inventory = _inventory(tmp_path, {"gw1": {"gateway_public_keys": {"ffmuc_welt": KEY_A}}})
    for role, hosts in (("broker", "broker"), ("worker", "gateways")):
        result = _preflight(tmp_path, role, hosts, inventory)
        assert result.returncode == 0, result.stdout + result.stderr
    # gw2 has not published its key yet: said, not failed.
    assert "no gateway_public_keys yet from gw2" in result.stdout
    # The generated password is the file the mqtt role would read.
    assert (tmp_path / "secrets" / "mqtt-gw1").read_text().strip()


@pytest.mark.parametrize(
    ("role", "hosts", "group_vars", "host_vars", "expected"),
    [
        pytest.param(
            "broker",
            "broker",
            {"broker_workers": {"gw1": {"weight": 1}}},
            {},
            "broker1: gateway gw2 (group gateways) is missing from broker_workers",
            id="gateway-missing-from-workers",
        ),
        pytest.param(
            "broker",
            "broker",
            {},
            {"gw2": {"wgmesh_gateway_weight": -3}},
            "gw2: wgmesh_gateway_weight must be a positive number",
            id="negative-weight",
        ),
        pytest.param(
            "broker",
            "broker",
            {},
            {"gw2": {"wgmesh_gateway_weight": "heavy"}},
            "gw2: wgmesh_gateway_weight must be a positive number",
            id="weight-not-a-number",
        ),
        pytest.param(
            "broker",
            "broker",
            {"wgmesh_domains": [{**DOMAIN, "name": "welt"}]},
            {},
            "broker1: broker_domains[0] needs a `name`",
            id="domain-without-its-prefix",
        ),
        pytest.param(
            "broker",
            "broker",
            {"broker_blocklist": {"ffmuc_nowhere": [KEY_A]}},
            {},
            "broker1: broker_blocklist.ffmuc_nowhere: the domain must be one of",
            id="key-list-unknown-domain",
        ),
        pytest.param(
            "broker",
            "broker",
            {"wgmesh_secrets_dir": ""},
            {},
            "broker1: the broker's MQTT user broker1 needs a password",
            id="no-password",
        ),
        pytest.param(
            "worker",
            "gateways",
            {},
            {"gw2": {"gateway_public_keys": {"ffmuc_welt": "not-a-key"}}},
            "gw1: worker_static_peers[0] is not a WireGuard public key",
            id="malformed-static-peer",
        ),
        pytest.param(
            "worker",
            "gateways",
            {},
            {"gw2": {"gateway_public_keys": {"ffmuc_welt": KEY_A}, "gateway_endpoints": {"ffmuc_welt": "gw2"}}},
            f'gw1: worker_static_peers[{KEY_A}] must be an endpoint "host:port"',
            id="static-peer-endpoint-without-port",
        ),
        pytest.param(
            "worker",
            "gateways",
            {"worker_backend": "fast"},
            {},
            "gw1: worker_domains needs at least one domain",
            id="unknown-backend",
        ),
        pytest.param(
            "worker",
            "gateways",
            {"worker_interfaces": {"ffmuc_nowhere": {"wg": "wg-x"}}},
            {},
            "may name only those domains",
            id="interfaces-unknown-domain",
        ),
    ],
)
def test_wrong_value_fails_naming_host_and_variable(tmp_path, role, hosts, group_vars, host_vars, expected):
    inventory = _inventory(tmp_path, {"gw1": {"gateway_public_keys": {"ffmuc_welt": KEY_B}}, **host_vars}, **group_vars)
    result = _preflight(tmp_path, role, hosts, inventory)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert expected in output, output


def test_password_never_printed_with_diff_and_vvv(tmp_path):
    secret = "s3cret-Never-Printed-7Qx"
    inventory = _inventory(tmp_path, wgmesh_mqtt_passwords={"broker1": secret})
    result = _preflight(tmp_path, "broker", "broker", inventory, "--diff", "-vvv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr
    assert json.dumps(secret)[1:-1] not in result.stdout + result.stderr
