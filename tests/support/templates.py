"""Render a role's templates and variables in unit tests the way Ansible does."""

from __future__ import annotations

from pathlib import Path

import jinja2
from ansible.plugins.filter.core import FilterModule
from ansible.template import trust_as_template


def role_environment(role: Path) -> jinja2.Environment:
    """The role's templates/ with Ansible's core filters (bool, to_json, ...) beside Jinja's own."""
    env = jinja2.Environment(
        # autoescape off: the roles render config files (networkd, mosquitto), as Ansible does (no HTML).
        loader=jinja2.FileSystemLoader(role / "templates"),
        trim_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701
    )
    for name, function in FilterModule().filters().items():
        env.filters.setdefault(name, function)
    return env


def trusted(data):
    """Mark every string of inventory-like data as a template, as Ansible does for its own vars
    (ansible-core 2.19 renders only trusted strings; plain test data would stay literal)."""
    if isinstance(data, str):
        return trust_as_template(data)
    if isinstance(data, dict):
        return {k: trusted(v) for k, v in data.items()}
    if isinstance(data, list):
        return [trusted(v) for v in data]
    return data


def gateway_domain(**overrides) -> dict:
    """One domain as the gateway role's vars hand it to its networkd templates (`item.0`)."""
    domain = {
        "name": "ffmuc_welt",
        "mode": "ffmuc",
        "vni": 4831583,
        "lladdr": "fe80::1",
        "vxlan_port": 8472,
        "ifs": {"wg": "wg-welt", "vx": "vx-welt", "bat": "bat-welt", "br": "br-welt"},
        "peers": [],
        "macs": {},
    }
    return domain | overrides
