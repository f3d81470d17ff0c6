"""Where the daemons are installed is stated once: by the wgmesh_daemon role, which installs them.

The venv (`/opt/wgmesh/venv`, its `bin/` holds wgmesh-worker and wgmesh-ha) and the config
directory (`/etc/wgmesh`, the daemons' `<name>.yaml`) are wgmesh_daemon's defaults; the worker
and keepalived roles list it as a dependency, so its defaults are theirs, and build their
paths from them. A path typed again in another role would go stale the day the install moves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from tests.support.templates import trusted

ROLES = Path(__file__).resolve().parents[3] / "roles"
OWNER = "wgmesh_daemon"
# The install's paths, as a role would type them.
TYPED = re.compile(r"/opt/wgmesh\b|/etc/wgmesh/(worker|broker)\.yaml")
# Prose (READMEs, argument_specs descriptions) may name the default; code may not.
CODE_DIRS = ("defaults", "vars", "tasks", "handlers", "templates", "files")


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


def _spec_defaults(role: Path) -> list[str]:
    specs = _yaml(role / "meta" / "argument_specs.yml")["argument_specs"]
    return [repr(opt.get("default")) for entry in specs.values() for opt in (entry.get("options") or {}).values()]


OTHER_ROLES = sorted(p for p in ROLES.iterdir() if p.is_dir() and p.name != OWNER)


@pytest.mark.parametrize("role", OTHER_ROLES, ids=lambda p: p.name)
def test_no_other_role_types_the_install_paths(role):
    typed = [
        f"{path.relative_to(ROLES)}:{n}: {line.strip()}"
        for d in CODE_DIRS
        for path in sorted((role / d).rglob("*"))
        if path.is_file()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if TYPED.search(line)
    ]
    typed += [f"{role.name}/meta/argument_specs.yml: default {d}" for d in _spec_defaults(role) if TYPED.search(d)]
    assert not typed, "use wgmesh_daemon's defaults (wgmesh_daemon_venv, wgmesh_daemon_config_dir):\n" + "\n".join(
        typed
    )


@pytest.mark.parametrize("role", OTHER_ROLES, ids=lambda p: p.name)
def test_a_role_that_reads_them_depends_on_wgmesh_daemon(role):
    # Only a dependency's defaults are a role's own; an include_role hands back nothing.
    code = "".join(p.read_text() for d in ("defaults", "vars") for p in (role / d).glob("*.yml"))
    if "wgmesh_daemon_" not in code.replace("_wgmesh_daemon_", ""):
        pytest.skip(f"{role.name} does not read them")
    deps = _yaml(role / "meta" / "main.yml")["dependencies"]
    assert [d["role"] if isinstance(d, dict) else d for d in deps] == [f"freifunk.wgmesh.{OWNER}"]


def test_the_paths_the_roles_build_are_the_ones_wgmesh_daemon_installs():
    variables = {
        **_yaml(ROLES / OWNER / "defaults" / "main.yml"),
        **_yaml(ROLES / OWNER / "vars" / "main.yml"),
        **_yaml(ROLES / "keepalived" / "defaults" / "main.yml"),
        **_yaml(ROLES / "worker" / "vars" / "main.yml"),
        "_wgmesh_daemon_name": "worker",
    }
    render = Templar(loader=DataLoader(), variables=trusted(variables)).template
    installed = {
        "venv bin": render(trusted("{{ _wgmesh_daemon_venv }}/bin")),
        "worker config": render(trusted("{{ _wgmesh_daemon_config_path }}")),
    }
    assert installed == {"venv bin": "/opt/wgmesh/venv/bin", "worker config": "/etc/wgmesh/worker.yaml"}
    assert render(trusted("{{ keepalived_ha_command }}")) == installed["venv bin"] + "/wgmesh-ha"
    assert render(trusted("{{ keepalived_worker_config }}")) == installed["worker config"]
    assert render(trusted("{{ _worker_command }}")) == installed["venv bin"] + "/wgmesh-worker"
    assert render(trusted("{{ _worker_config_path }}")) == installed["worker config"]
