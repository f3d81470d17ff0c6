# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters wg_ifnames, wg_ifname; documented in the adjacent <filter>.yml files."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.module_utils._naming import interface_name, interface_names


def wg_ifnames(domain, prefixes):
    """Dict of the interface names (wg, vx, bat, br) of a mesh domain."""
    try:
        return interface_names(domain, prefixes)
    except ValueError as e:
        raise AnsibleFilterError(str(e)) from None


def wg_ifname(domain, prefixes, kind):
    """One interface name (kind wg, vx, bat or br) of a mesh domain."""
    try:
        return interface_name(domain, prefixes, kind)
    except ValueError as e:
        raise AnsibleFilterError(str(e)) from None


class FilterModule(object):
    def filters(self):
        return {"wg_ifnames": wg_ifnames, "wg_ifname": wg_ifname}
