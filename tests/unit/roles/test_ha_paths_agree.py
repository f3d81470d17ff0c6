"""The keepalived and worker roles name files that wgmesh-ha and the worker write; the roles type
the paths in their defaults (an include_role hands back no variables), so this guards that they
stay the daemons' own defaults."""

from __future__ import annotations

from pathlib import Path

import yaml

from wgmesh import config
from wgmesh.config import WorkerConfig
from wgmesh.ha import state

ROLES = Path(__file__).resolve().parents[3] / "roles"


def defaults(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())


def test_keepalived_tracks_the_files_the_daemons_write():
    keepalived = defaults("keepalived")
    assert keepalived["keepalived_ha_state_file"] == state.DEFAULT_PATH
    assert keepalived["keepalived_ha_synced_file"] == WorkerConfig.ha_synced_file


def test_the_worker_units_state_directory_is_where_the_daemon_writes():
    # systemd makes it (StateDirectory=), and ProtectSystem=strict leaves only it writable: the
    # daemon's default HA files (and the role's journal) lie in it.
    worker_vars = yaml.safe_load((ROLES / "worker" / "vars" / "main.yml").read_text())
    assert worker_vars["_worker_unit"]["StateDirectory"] == "{{ _worker_service }}"
    assert f"/var/lib/{worker_vars['_worker_service']}" == config.WORKER_STATE_DIR
    assert worker_vars["_worker_config"].count("'journal': '/var/lib/' ~ _worker_service ~ '/journal.json'") == 1


def test_worker_role_reads_the_state_file_wgmesh_ha_writes():
    assert f"'{state.DEFAULT_PATH}'" in defaults("worker")["worker_ha_state_file"]
