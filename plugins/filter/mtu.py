# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter wg_mtus; documented in the adjacent wg_mtus.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.module_utils._mtu import mtus


def wg_mtus(underlay=1500, family="ipv6"):
    """MTUs of a domain's interfaces computed from the underlay MTU."""
    try:
        return mtus(underlay, family)
    except ValueError as e:
        raise AnsibleFilterError(str(e)) from None


class FilterModule(object):
    def filters(self):
        return {"wg_mtus": wg_mtus}
