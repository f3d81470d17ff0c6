# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter wg_pubkey; documented in the adjacent wg_pubkey.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.module_utils._wgkey import (
    HAS_CRYPTOGRAPHY,
    key_problem,
    public_key_of,
)


def wg_pubkey(private_key):
    """WireGuard public key of a base64 private key, like `wg pubkey`."""
    if not HAS_CRYPTOGRAPHY:
        raise AnsibleFilterError("the Python library 'cryptography' is required on the controller")
    problem = key_problem(private_key)
    if problem:
        # Never echo the secret, not even the one character key_problem may quote.
        if problem.startswith("has a last character"):
            problem = "its last base64 character before '=' cannot end 32 bytes"
        raise AnsibleFilterError("the private key is not a WireGuard key: %s" % problem)
    return public_key_of(private_key)


class FilterModule(object):
    def filters(self):
        return {"wg_pubkey": wg_pubkey}
