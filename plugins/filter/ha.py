# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters wg_ha_pair and wg_ha_mac; documented in the adjacent wg_ha_pair.yml and wg_ha_mac.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.freifunk.wgmesh.plugins.filter.mesh import EXTERNAL_NAME_VAR, IDENTITY_VAR
from ansible_collections.freifunk.wgmesh.plugins.module_utils._derive import ha_mac

# The inventory variables an HA member states about itself (docs/inventory.md).
VIPS_VAR = "wgmesh_ha_vips"
VRID_VAR = "wgmesh_ha_virtual_router_id"
PRIORITY_VAR = "wgmesh_ha_priority"


def _vips(host, value):
    """`addr/prefix` strings -> {4: "addr/prefix", 6: ...}: at most one per family, as wgmesh-ha
    takes one --vip per family for its source route."""
    if not isinstance(value, (list, tuple)) or not value:
        raise AnsibleFilterError(f"{host}: {VIPS_VAR} must be a non-empty list of addresses with prefix, got {value!r}")
    families = {4: [], 6: []}
    for item in value:
        try:
            interface = ipaddress.ip_interface(to_text(item))
        except ValueError:
            raise AnsibleFilterError(
                f"{host}: {VIPS_VAR} entry {item!r} is not an address with prefix (192.0.2.1/24, 2001:db8::1/64)"
            ) from None
        if "/" not in to_text(item):
            raise AnsibleFilterError(f"{host}: {VIPS_VAR} entry {item!r} needs its prefix length (192.0.2.1/24)")
        address = interface.ip
        if address.is_loopback or address.is_multicast or address.is_link_local or address.is_unspecified:
            raise AnsibleFilterError(
                f"{host}: {VIPS_VAR} entry {item!r} is a loopback, multicast, link-local or unspecified address"
            )
        if families[address.version]:
            raise AnsibleFilterError(
                f"{host}: {VIPS_VAR} has more than one IPv{address.version} address ({families[address.version][0]}, "
                f"{item}); a pair has at most one per family"
            )
        families[address.version].append(str(interface))
    return {version: addresses[0] for version, addresses in families.items() if addresses}


def _int(host, name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AnsibleFilterError(f"{host}: {name} must be an integer from {low} to {high}, got {value!r}")
    return value


def _external_name(host, facts, vips):
    """The name nodes and the other gateways reach the pair at: stated, since the default (the
    host's own name) would lead them to one member; an address must be one of the VIPs."""
    name = facts.get(EXTERNAL_NAME_VAR)
    if not name or not isinstance(name, str):
        raise AnsibleFilterError(
            f"{host}: an HA member must state {EXTERNAL_NAME_VAR}, the name (or address) of the pair's virtual address "
            f"that nodes and the other gateways reach it at (the same on both members); without it they would reach "
            f"{host} itself, got {name!r}"
        )
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return to_text(name)  # a name: it must resolve to the VIPs, which only DNS can tell
    if address not in [ipaddress.ip_interface(v).ip for v in vips.values()]:
        raise AnsibleFilterError(
            f"{host}: {EXTERNAL_NAME_VAR} {name!r} is an address but none of the pair's {VIPS_VAR} "
            f"{sorted(vips.values())}; nodes and the other gateways must reach the pair at its virtual address"
        )
    return to_text(name)


def wg_ha_pair(host, hosts, hostvars):
    """The HA pair `host` belongs to, checked:
    {name, members, partner, vips, virtual_router_id, priority, external_name}.

    A pair is two hosts of `hosts` that share wgmesh_gateway_identity and state wgmesh_ha_vips;
    both state the same addresses, virtual router id and external name, and different priorities.
    Returns {} for a host that states no wgmesh_ha_vips (not an HA member).
    """
    host = to_text(host)
    facts = hostvars[host]
    if not facts.get(VIPS_VAR):
        return {}
    name = to_text(facts.get(IDENTITY_VAR) or host)
    members = [
        to_text(h)
        for h in hosts or []
        if to_text(hostvars[h].get(IDENTITY_VAR) or h) == name and hostvars[h].get(VIPS_VAR)
    ]
    if host not in members or len(members) != 2:
        raise AnsibleFilterError(
            f"{host}: an HA pair is two hosts with the same {IDENTITY_VAR} ({name!r}) and {VIPS_VAR}; "
            f"found {members} in the gateways group"
        )
    partner = next(m for m in members if m != host)
    mine = {
        "vips": _vips(host, facts.get(VIPS_VAR)),
        "virtual_router_id": _int(host, VRID_VAR, facts.get(VRID_VAR), 1, 255),
        "priority": _int(host, PRIORITY_VAR, facts.get(PRIORITY_VAR), 1, 254),
    }
    theirs = {
        "vips": _vips(partner, hostvars[partner].get(VIPS_VAR)),
        "virtual_router_id": _int(partner, VRID_VAR, hostvars[partner].get(VRID_VAR), 1, 255),
        "priority": _int(partner, PRIORITY_VAR, hostvars[partner].get(PRIORITY_VAR), 1, 254),
    }
    if mine["vips"] != theirs["vips"]:
        raise AnsibleFilterError(
            f"{host}: {VIPS_VAR} {facts.get(VIPS_VAR)} differs from {hostvars[partner].get(VIPS_VAR)} of its partner "
            f"{partner} (an HA pair has one set of virtual addresses)"
        )
    if mine["virtual_router_id"] != theirs["virtual_router_id"]:
        raise AnsibleFilterError(
            f"{host}: {VRID_VAR} {mine['virtual_router_id']} differs from {theirs['virtual_router_id']} of its partner "
            f"{partner}"
        )
    if mine["priority"] == theirs["priority"]:
        raise AnsibleFilterError(
            f"{host}: {PRIORITY_VAR} {mine['priority']} equals its partner {partner}'s; the members need different "
            "priorities (the higher one is the preferred active member)"
        )
    mine["external_name"] = _external_name(host, facts, mine["vips"])
    theirs_name = _external_name(partner, hostvars[partner], theirs["vips"])
    if mine["external_name"] != theirs_name:
        raise AnsibleFilterError(
            f"{host}: {EXTERNAL_NAME_VAR} {mine['external_name']!r} differs from {theirs_name!r} of its partner "
            f"{partner} (the pair is one gateway, reached at its virtual address)"
        )
    return {"name": name, "members": sorted(members), "partner": partner, **mine}


def wg_ha_mac(identity, domain, kind):
    """The MAC both members of HA pair `identity` give their `kind` (vx, bat, br) interface of `domain`."""
    try:
        return ha_mac(identity, domain, kind)
    except ValueError as e:
        raise AnsibleFilterError("wg_ha_mac: %s" % e) from None


class FilterModule(object):
    def filters(self):
        return {"wg_ha_pair": wg_ha_pair, "wg_ha_mac": wg_ha_mac}
