"""The keepalived and worker roles name files that wgmesh-ha and the worker write; the roles type
the paths in their defaults (an include_role hands back no variables), so this guards that they
stay the daemons' own defaults."""

from __future__ import annotations

from pathlib import Path

import yaml

from wgmesh.config import WorkerConfig
from wgmesh.ha import state

ROLES = Path(__file__).resolve().parents[3] / "roles"


def defaults(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())


def test_keepalived_tracks_the_files_the_daemons_write():
    keepalived = defaults("keepalived")
    assert keepalived["keepalived_ha_state_file"] == state.DEFAULT_PATH
    assert keepalived["keepalived_ha_synced_file"] == WorkerConfig.ha_synced_file


def test_worker_role_reads_the_state_file_wgmesh_ha_writes():
    assert f"'{state.DEFAULT_PATH}'" in defaults("worker")["worker_ha_state_file"]
