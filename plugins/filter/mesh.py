# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters wg_gateways, wg_duplicates; documented in the adjacent <filter>.yml files."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

# The inventory variables a gateway host states about itself (docs/inventory.md).
IDENTITY_VAR = "wgmesh_gateway_identity"
WEIGHT_VAR = "wgmesh_gateway_weight"
EXTERNAL_NAME_VAR = "wgmesh_gateway_external_name"


def _weight(host, value):
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = 0.0
    if not weight > 0:
        raise AnsibleFilterError(f"{host}: {WEIGHT_VAR} must be a positive number, got {value!r}")
    return int(weight) if weight.is_integer() else weight


def wg_gateways(hosts, hostvars, passwords=None):
    """Gateway identities of a host group: identity -> {hosts, weight, external_names[, password]}.

    The members of an HA pair share one identity (one MQTT user, one worker name in topics) and must
    agree on its weight; each member keeps its own host name as MQTT client id.
    """
    passwords = passwords or {}
    identities = {}
    for host in hosts or []:
        host = to_text(host)
        facts = hostvars[host]
        name = to_text(facts.get(IDENTITY_VAR) or host)
        weight = _weight(host, facts.get(WEIGHT_VAR, 1))
        entry = identities.setdefault(name, {"hosts": [], "weight": weight, "external_names": []})
        if entry["weight"] != weight:
            raise AnsibleFilterError(
                f"{host}: {WEIGHT_VAR} {weight} differs from {entry['weight']} of {entry['hosts'][0]}, "
                f"which shares its {IDENTITY_VAR} {name!r} (an HA pair has one weight)"
            )
        entry["hosts"].append(host)
        entry["external_names"].append(to_text(facts.get(EXTERNAL_NAME_VAR) or host))
        if passwords.get(name):
            entry["password"] = passwords[name]
    return identities


def wg_duplicates(values):
    """The values that occur more than once, each once, in order of their second occurrence."""
    seen, twice = set(), []
    for value in values or []:
        if value in seen and value not in twice:
            twice.append(value)
        seen.add(value)
    return twice


class FilterModule(object):
    def filters(self):
        return {"wg_gateways": wg_gateways, "wg_duplicates": wg_duplicates}
