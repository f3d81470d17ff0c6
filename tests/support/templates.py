"""Render a role's Jinja2 templates in unit tests the way Ansible's template module does."""

from __future__ import annotations

from pathlib import Path

import jinja2
from ansible.plugins.filter.core import FilterModule


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
