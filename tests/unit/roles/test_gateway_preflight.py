"""The gateway role's preflight refuses each wrong inventory value, naming the host and the variable.

Runs the role's preflight tag only, in check mode, against localhost with a local
connection: nothing on the machine changes. Needs the collection link (make collection).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SEED = "1f0b31cecdf980317f453b162ac476ee09cf9997b03e684d4f2f484e75d9cd26"
GOOD = {"name": "ffmuc_welt", "prefix": "ffmuc_", "seed": SEED, "port": 40011, "mode": "ffmuc"}
PLAY = """
- hosts: gw-test
  gather_facts: false
  roles:
    - role: freifunk.wgmesh.gateway
"""


def preflight(tmp_path: Path, domains: list[dict]) -> subprocess.CompletedProcess:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    extra = {
        "wgmesh_domains": domains,
        # Containers and this machine have neither module; the checks under test come first.
        "gateway_batman": False,
        "gateway_wireguard_userspace": True,
    }
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            "gw-test,",
            "-c",
            "local",
            "-e",
            "ansible_python_interpreter=" + str(REPO / ".venv" / "bin" / "python"),
            "-e",
            json.dumps(extra),
            "--check",
            "--tags",
            "gateway_preflight",
            str(playbook),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_good_domains_pass(tmp_path):
    result = preflight(tmp_path, [GOOD, dict(GOOD, name="ffmuc_uml", port=40012)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("domains", "named"),
    [
        ([dict(GOOD, name="welt")], ["gateway_domains[0]", "must start with its prefix"]),
        ([dict(GOOD, mode="wgkex")], ["gateway_domains[0]", "mode=wgkex"]),
        ([dict(GOOD, seed=SEED[:-1])], ["gateway_domains[0]", "seed 64 hex digits"]),
        ([GOOD, dict(GOOD, name="ffmuc_uml")], ["gateway_domains", "listen ports", "40011"]),
        ([dict(GOOD, name="ffmuc_abcdefghijklm")], ["gateway_domains", "ffmuc_abcdefghijklm", "15"]),
    ],
    ids=["prefix", "mode", "seed", "duplicate-port", "name-too-long"],
)
def test_wrong_value_is_refused_naming_host_and_variable(tmp_path, domains, named):
    result = preflight(tmp_path, domains)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "gw-test" in output
    for text in named:
        assert text in output, (text, output)
