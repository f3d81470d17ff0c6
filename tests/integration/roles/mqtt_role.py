"""Render the mqtt role's files as Ansible would, for tests that run them in a real mosquitto.

Defaults and internals are read from roles/mqtt/{defaults,vars}/main.yml and
rendered in order, so a test sees the role's real values unless it overrides
them. Ansible's own filters are used; only Ansible's lookups are absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jinja2
import yaml
from ansible.plugins.filter.core import FilterModule

ROLE = Path(__file__).resolve().parents[3] / "roles" / "mqtt"


def environment(undefined=jinja2.StrictUndefined) -> jinja2.Environment:
    env = jinja2.Environment(  # the output is config files, never HTML
        loader=jinja2.FileSystemLoader(ROLE / "templates"),
        trim_blocks=True,
        undefined=undefined,
        autoescape=False,  # noqa: S701
    )
    for name, function in FilterModule().filters().items():
        env.filters.setdefault(name, function)
    return env


def variables(**overrides) -> dict:
    """The role's defaults and internals, rendered, with overrides winning."""
    # Like Ansible, `wgmesh_mqtt.tls | default(false)` is fine with wgmesh_mqtt unset.
    env = environment(jinja2.ChainableUndefined)
    context = {"ansible_managed": "managed by a test", **overrides}
    for source in ("defaults", "vars"):
        for name, value in yaml.safe_load((ROLE / source / "main.yml").read_text()).items():
            if name in overrides:
                continue
            if isinstance(value, str) and "{" in value:
                try:
                    value = yaml.safe_load(env.from_string(value).render(context))
                except jinja2.UndefinedError:
                    continue  # needs Ansible's lookups; no template uses it
            context[name] = value
    return context


def render(template: str, context: dict) -> str:
    return environment().get_template(template).render(context)


def write_password_file(path: Path, accounts: list[dict], group: str) -> dict:
    """The role's password tool, run as the role runs it (JSON on stdin)."""
    result = subprocess.run(
        [sys.executable, str(ROLE / "files" / "mosquitto_passwd_sync.py"), str(path), "--group", group],
        input=json.dumps(accounts),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)
