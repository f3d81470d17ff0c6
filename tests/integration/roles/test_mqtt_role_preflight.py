"""The mqtt role's preflight through ansible-playbook: a wrong inventory fails before any change,
with the host and the variable named.

Only the preflight runs (--tags mqtt_preflight --check on localhost): it
asserts and collects passwords, nothing else, so the test host is not touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
GOOD = {
    "mqtt_domains": [{"name": "ffmuc_welt"}],
    "mqtt_brokers": [{"name": "broker1", "password": "pw-broker-1"}],
    "mqtt_gateways": [{"name": "gw1", "password": "pw-gw-1", "client_ids": ["gw1a", "gw1b"]}],
}


def preflight(tmp_path: Path, **overrides) -> subprocess.CompletedProcess:
    play = [{"hosts": "all", "gather_facts": False, "roles": [{"role": "freifunk.wgmesh.mqtt"}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "vars.yml").write_text(yaml.safe_dump({**GOOD, **overrides}))
    argv = [str(ANSIBLE_PLAYBOOK), "-i", "mqtt-test-host,", "-c", "local", "--check", "--tags", "mqtt_preflight"]
    argv += ["-e", f"@{tmp_path / 'vars.yml'}", "-e", f"ansible_python_interpreter={sys.executable}"]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run([*argv, str(tmp_path / "play.yml")], capture_output=True, text=True, env=env, check=False)


def test_good_inventory_passes(tmp_path):
    result = preflight(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pw-gw-1" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"mqtt_domains": ["ffmuc/welt"]}, "mqtt_domains[0]"),
        ({"mqtt_gateways": [{"name": "gw+1", "password": "x"}]}, "mqtt_gateways[0]"),
        ({"mqtt_gateways": [{"name": "broker1", "password": "x"}]}, "mqtt_gateways[0]"),
        ({"mqtt_gateways": [{"name": "gw2"}]}, "mqtt_gateways[0]"),  # no password, no mqtt_password_dir
        ({"mqtt_gateways_removed": [{"name": "gw1"}]}, "mqtt_gateways[0]"),
        (
            {
                "mqtt_gateways": [
                    {"name": "gw1", "password": "x", "client_ids": ["a"]},
                    {"name": "gw2", "password": "y", "client_ids": ["a"]},
                ]
            },
            "mqtt_gateways[].client_ids",
        ),
        ({"mqtt_tls": True}, "mqtt_tls_certfile"),
        ({"mqtt_port": 0}, "mqtt_port"),
        ({"wgmesh_mqtt": {"port": 8883}}, "wgmesh_mqtt.port"),
    ],
)
def test_wrong_inventory_fails_naming_host_and_variable(tmp_path, overrides, named):
    result = preflight(tmp_path, **overrides)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "mqtt-test-host: " in output
    assert named in output
    assert "pw-gw-1" not in output and "pw-broker-1" not in output


def test_password_is_generated_once_on_the_controller(tmp_path):
    secrets = tmp_path / "secrets"
    result = preflight(tmp_path, mqtt_gateways=[{"name": "gw2"}], mqtt_password_dir=str(secrets))
    assert result.returncode == 0, result.stdout + result.stderr
    password = (secrets / "mqtt-gw2").read_text()
    assert preflight(tmp_path, mqtt_gateways=[{"name": "gw2"}], mqtt_password_dir=str(secrets)).returncode == 0
    assert (secrets / "mqtt-gw2").read_text() == password
    assert password.split()[0] not in result.stdout + result.stderr
