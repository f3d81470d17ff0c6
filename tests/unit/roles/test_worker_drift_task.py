"""The worker role's drift check runs the worker's own `--drift` and repairs with a reload.

The role builds the worker's command and config path from the wgmesh_daemon role's defaults
(its dependency; an include_role hands back no variables), and names the drift exit code (the
daemon's): each must
equal what the unit really runs and what the daemon really returns. The unit, rendered with
the worker's own arguments, is Type=notify with ExecReload sending SIGHUP. Rendered with
ansible-core's Templar, as a play would.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from tests.support.templates import trusted
from wgmesh.worker import drift

ROLES = Path(__file__).resolve().parents[3] / "roles"


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


def _include_vars() -> dict:
    """The vars the worker role hands to wgmesh_daemon's configure tasks."""
    (task,) = _yaml(ROLES / "worker" / "tasks" / "configure.yml")
    return task["vars"]


def templar(**extra) -> Templar:
    variables = {
        **_yaml(ROLES / "wgmesh_daemon" / "defaults" / "main.yml"),  # a dependency's defaults
        **_yaml(ROLES / "wgmesh_daemon" / "vars" / "main.yml"),
        **_yaml(ROLES / "worker" / "vars" / "main.yml"),
        **_include_vars(),
        "worker_backend": "kernel",
        "ansible_managed": "managed",
        "_wgmesh_daemon_package": "0.0.0-test",
        **extra,
    }
    return Templar(loader=DataLoader(), variables=trusted(variables))


def render(text: str, **extra):
    return templar(**extra).template(trusted(text))


def unit_lines() -> list[str]:
    template = (ROLES / "wgmesh_daemon" / "templates" / "daemon.service.j2").read_text()
    return render(template).splitlines()


def drift_task() -> dict:
    tasks = _yaml(ROLES / "worker" / "tasks" / "run.yml")
    (task,) = [t for t in tasks if "--drift" in t.get("ansible.builtin.command", {}).get("argv", []) and "notify" in t]
    return task


def test_the_drift_check_runs_what_the_unit_runs_with_drift_added():
    (exec_start,) = [line for line in unit_lines() if line.startswith("ExecStart=")]
    argv = [render(arg) for arg in drift_task()["ansible.builtin.command"]["argv"]]
    assert exec_start == "ExecStart=" + " ".join(argv[:-1])
    assert argv[-1] == "--drift"


def test_the_role_reads_the_daemons_own_drift_exit_code():
    assert render("{{ _worker_drift_exit }}") == drift.EXIT_DRIFT


def test_the_unit_is_type_notify_and_reloads_with_sighup():
    lines = unit_lines()
    assert "Type=notify" in lines
    assert "ExecReload=/bin/kill -HUP $MAINPID" in lines


def test_drift_is_read_in_check_mode_too_and_repaired_by_a_reload_not_a_restart():
    task = drift_task()
    assert task["check_mode"] is False
    (handler,) = [h for h in _yaml(ROLES / "worker" / "handlers" / "main.yml") if h["name"] == task["notify"]]
    assert handler["ansible.builtin.systemd_service"]["state"] == "reloaded"
