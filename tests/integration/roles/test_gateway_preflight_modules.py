"""The gateway role's kernel-module check, run by ansible-playbook on this host.

This host's kernel is the test subject: the preflight must name exactly the
modules (batman_adv, wireguard) it lacks, so an operator knows what to install.
Only the `gateway_preflight` tag runs; nothing on the host changes.
"""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from tests.support.playbook import LOCAL, run_playbook

DOMAIN = {
    "name": "ffmuc_welt",
    "prefix": "ffmuc_",
    "seed": "1f0b31cecdf980317f453b162ac476ee09cf9997b03e684d4f2f484e75d9cd26",
    "port": 40011,
    "mode": "ffmuc",
}


def _missing_modules() -> list[str]:
    """What this kernel lacks, looked up the way an operator would."""
    modules_dir = Path("/lib/modules") / platform.release()
    missing = []
    for name, file_name in (("batman_adv", "batman-adv"), ("wireguard", "wireguard")):
        loaded = Path("/sys/module", name).is_dir()
        loadable = modules_dir.is_dir() and any(modules_dir.rglob(f"{file_name}.ko*"))
        if not (loaded or loadable):
            missing.append(name)
    return missing


def test_preflight_names_the_missing_kernel_modules(tmp_path):
    missing = _missing_modules()
    if not missing:
        pytest.skip("this kernel has batman-adv and wireguard; nothing to report")
    inventory = {"all": {"vars": {"wgmesh_domains": [DOMAIN]}, "children": {"gateways": {"hosts": {"gw1": LOCAL}}}}}
    play = {"name": "Preflight", "hosts": "gateways", "gather_facts": False, "roles": ["freifunk.wgmesh.gateway"]}
    result = run_playbook(tmp_path, inventory, [play], "--tags", "gateway_preflight")
    assert result.returncode != 0, result.stdout
    assert f"has no module {', '.join(missing)}." in result.stdout, result.stdout + result.stderr
