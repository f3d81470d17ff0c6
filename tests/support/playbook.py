"""Run ansible-playbook on this host the way the role tests do: this venv's ansible-playbook,
the repository's ansible.cfg (the collection resolves to this tree), no colour."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# Every host of these inventories is this one, through the local connection.
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def run_playbook(tmp_path: Path, inventory: dict, plays: list[dict], *args: str) -> subprocess.CompletedProcess:
    """Write INVENTORY and PLAYS to TMP_PATH and run them; the result's output is text."""
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.yml")]
    return subprocess.run(
        [*argv, str(tmp_path / "play.yml"), *args], capture_output=True, text=True, cwd=ROOT, env=env, check=False
    )
