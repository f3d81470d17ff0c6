"""The mqtt role's ACL template rendered as the role renders it (unit tests and integration tests
that run mosquitto with the real ACL)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.templates import role_environment

ROLE = Path(__file__).resolve().parents[2] / "roles" / "mqtt"


def render_acl(**variables) -> str:
    """wgmesh.acl.j2 with mqtt_domains, mqtt_brokers and mqtt_gateways as given."""
    env = role_environment(ROLE)
    internals = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    context = {"ansible_managed": "managed", "_mqtt_admin_user": internals["_mqtt_admin_user"], **variables}
    # _mqtt_domain_names is itself a template in vars/main.yml: render it too.
    context["_mqtt_domain_names"] = yaml.safe_load(env.from_string(internals["_mqtt_domain_names"]).render(context))
    return env.get_template("wgmesh.acl.j2").render(context)
