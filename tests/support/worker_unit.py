"""The worker's systemd unit and the files it writes, as the worker role renders them.

The unit comes from the wgmesh_daemon template with the worker role's arguments, rendered with
ansible-core's Templar as a play would; the files are the rendered config's paths, else the
daemon's defaults (wgmesh.config.WorkerConfig).
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from tests.support.templates import trusted
from wgmesh.config import WorkerConfig

ROLES = Path(__file__).resolve().parents[2] / "roles"
# One gateway alone, as the worker role's templates see it.
GATEWAY = {
    "inventory_hostname": "gw1a",
    "groups": {"gateways": ["gw1a"]},
    "hostvars": {"gw1a": {}},
    "wgmesh_domains": [{"name": "ffmuc_welt", "prefix": "ffmuc_"}],
    "_worker_mqtt_password": "secret",
}
# A member of an HA pair: the worker writes the HA sync files too.
INVENTORY = {
    **GATEWAY,
    "wgmesh_ha_vips": ["192.0.2.1/24"],
    "ansible_managed": "managed",
    "_wgmesh_daemon_package": "0.0.0-test",
}
WRITTEN = ("journal", "ha_endpoints_file", "ha_synced_file")


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


def worker_templar(**variables) -> Templar:
    """The worker role's variables (with its dependency's), then VARIABLES over them."""
    role = {
        **_yaml(ROLES / "wgmesh_daemon" / "defaults" / "main.yml"),  # the worker role's dependency
        **_yaml(ROLES / "wgmesh_daemon" / "vars" / "main.yml"),
        **_yaml(ROLES / "worker" / "defaults" / "main.yml"),
        **_yaml(ROLES / "worker" / "vars" / "main.yml"),
    }
    return Templar(loader=DataLoader(), variables=trusted({**role, **variables}))


def templar(backend: str) -> Templar:
    (configure,) = _yaml(ROLES / "worker" / "tasks" / "configure.yml")
    # configure's vars: what the worker role hands to wgmesh_daemon's configure tasks
    return worker_templar(**configure["vars"], **INVENTORY, worker_backend=backend)


def service(backend: str) -> dict[str, list[str]]:
    """The unit's [Service] section: key -> the values of its lines."""
    text = (ROLES / "wgmesh_daemon" / "templates" / "daemon.service.j2").read_text()
    rendered = templar(backend).template(trusted(text))
    section = rendered.split("[Service]\n", 1)[1].split("\n[", 1)[0]
    out: dict[str, list[str]] = {}
    for line in section.splitlines():
        if line and not line.startswith("#"):
            key, dummy, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def state_dirs(unit: dict[str, list[str]]) -> list[str]:
    """StateDirectory= as paths: systemd makes them under /var/lib, owned by User=."""
    return [f"/var/lib/{name}" for value in unit.get("StateDirectory", []) for name in value.split()]


def writable(unit: dict[str, list[str]]) -> list[str]:
    """Where ProtectSystem=strict still lets the service write (systemd.exec(5))."""
    assert unit["ProtectSystem"] == ["strict"]
    runtime = [f"/run/{name}" for value in unit.get("RuntimeDirectory", []) for name in value.split()]
    rw_paths = [path.lstrip("-") for value in unit.get("ReadWritePaths", []) for path in value.split()]
    return state_dirs(unit) + runtime + rw_paths


def written_by_the_worker(backend: str) -> dict[str, str]:
    """Config key -> the file the worker writes there."""
    worker = templar(backend).template(trusted("{{ _worker_config }}"))["worker"]
    return {name: worker.get(name, getattr(WorkerConfig, name)) for name in WRITTEN}


def under(path: str, dirs: list[str]) -> bool:
    return any(posixpath.commonpath([path, d]) == d for d in dirs)
