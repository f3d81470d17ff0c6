# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters wg_mac, wg_lladdr, wg_vni; documented in the adjacent <filter>.yml files."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.module_utils._derive import (
    check_rule,
    lladdr_from_key,
    mac_from_key,
    vni_from_seed,
)
from ansible_collections.freifunk.wgmesh.plugins.module_utils._wgkey import check_public_key


def _checked(key, rule):
    try:
        check_rule(rule)
        return check_public_key(key)
    except ValueError as e:
        raise AnsibleFilterError(str(e)) from None


def wg_mac(key, rule="ffmuc"):
    """MAC address a node derives from its WireGuard public key."""
    return mac_from_key(_checked(key, rule), rule)


def wg_lladdr(key, rule="ffmuc", prefixlen=None):
    """Link-local IPv6 address (canonical text) a node derives from its public key."""
    addr = str(lladdr_from_key(_checked(key, rule), rule))
    if prefixlen is None:
        return addr
    if isinstance(prefixlen, bool) or not isinstance(prefixlen, int) or not 0 <= prefixlen <= 128:
        raise AnsibleFilterError("prefixlen must be an integer from 0 to 128, got %r" % (prefixlen,))
    return "%s/%d" % (addr, prefixlen)


def wg_vni(domain_seed, rule="ffmuc"):
    """VXLAN id Gluon derives from a domain seed."""
    try:
        return vni_from_seed(domain_seed, rule)
    except ValueError as e:
        raise AnsibleFilterError(str(e)) from None


class FilterModule(object):
    def filters(self):
        return {"wg_mac": wg_mac, "wg_lladdr": wg_lladdr, "wg_vni": wg_vni}
