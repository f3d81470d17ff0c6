# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter wg_pubkey; documented in the adjacent wg_pubkey.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.module_utils._wgkey import key_problem

try:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
except ImportError:  # pragma: no cover - ansible-core depends on cryptography
    X25519PrivateKey = None


def wg_pubkey(private_key):
    """WireGuard public key of a base64 private key, like `wg pubkey`."""
    if X25519PrivateKey is None:
        raise AnsibleFilterError("the Python library 'cryptography' is required on the controller")
    problem = key_problem(private_key)
    if problem:
        # Never echo the secret, not even the one character key_problem may quote.
        if problem.startswith("has a last character"):
            problem = "its last base64 character before '=' cannot end 32 bytes"
        raise AnsibleFilterError("the private key is not a WireGuard key: %s" % problem)
    # X25519 clamps the scalar itself, exactly as `wg pubkey` does.
    private = X25519PrivateKey.from_private_bytes(base64.b64decode(private_key))
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(public).decode("ascii")


class FilterModule(object):
    def filters(self):
        return {"wg_pubkey": wg_pubkey}
