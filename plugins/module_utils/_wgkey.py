# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WireGuard keys in the plugins: syntax, low-order points, public from private.

A key is base64 of 32 bytes: 43 significant characters, the last of which can
only carry 4 bits, then one "=". The whole string must match; a trailing
newline is not part of a key (docs/architecture.md, "Keys").

The daemons' twins (wgmesh.protocol.KEY_RE and LOW_ORDER_KEYS) must stay equal
to these: hack/check-twins compares them in ``make lint``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import re

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
except ImportError:  # the target may lack it; callers fall back to `wg`
    X25519PrivateKey = None

HAS_CRYPTOGRAPHY = X25519PrivateKey is not None

KEY_RE = re.compile(r"\A[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=\Z")

# Points of small order on Curve25519 and its twist (u = 0, 1, -1 and the two u of
# order 8), as 32-byte little-endian base64, with the non-canonical forms u + p
# that still fit below 2^255, and all seven again with bit 255 set (X25519 masks
# that bit, so they are the same points). Every secret shared with such a "public
# key" is all zeros, so no node can own one: they are refused wherever a peer key
# goes in.
LOW_ORDER_KEYS = frozenset(
    (
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # u = 0
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # u = 1
        "4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=",  # order 8
        "X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEVc=",  # order 8
        "7P///////////////////////////////////////38=",  # u = p - 1
        "7f///////////////////////////////////////38=",  # u = p (0 again)
        "7v///////////////////////////////////////38=",  # u = p + 1 (1 again)
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA=",  # the same seven with bit 255 set
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA=",
        "4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuIA=",
        "X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEdc=",
        "7P////////////////////////////////////////8=",
        "7f////////////////////////////////////////8=",
        "7v////////////////////////////////////////8=",
    )
)


def key_problem(value):
    """Return why ``value`` is not a WireGuard key, or None when it is one."""
    if not isinstance(value, str):
        return "must be a string, got %s" % type(value).__name__
    if KEY_RE.match(value):
        return None
    if value != value.strip():
        return "has leading or trailing whitespace (a trailing newline is not part of a key)"
    if len(value) != 44:
        return "must be 44 characters of base64, got %d characters" % len(value)
    if not value.endswith("=") or value.endswith("=="):
        return "must end in exactly one '=' (base64 of 32 bytes)"
    if not re.match(r"\A[A-Za-z0-9+/]{43}=\Z", value):
        return "contains characters outside the base64 alphabet [A-Za-z0-9+/]"
    return "has a last character %r that cannot end base64 of 32 bytes" % value[42]


def public_key_problem(value):
    """Like key_problem, and also refuses the low-order points no peer can own."""
    problem = key_problem(value)
    if problem is None and value in LOW_ORDER_KEYS:
        return "is a low-order Curve25519 point (every secret shared with it is zero), not a peer's key"
    return problem


def check_key(value, what="key"):
    """Return ``value`` if it is a WireGuard key, else raise ValueError naming the problem."""
    problem = key_problem(value)
    if problem:
        raise ValueError("%s %r is not a WireGuard key: %s" % (what, value, problem))
    return value


def check_public_key(value, what="public key"):
    """Return ``value`` if it can be a peer's public key, else raise ValueError naming the problem."""
    problem = public_key_problem(value)
    if problem:
        raise ValueError("%s %r is not a WireGuard key: %s" % (what, value, problem))
    return value


def new_private_key():
    """A fresh base64 private key (needs cryptography; callers without it run `wg genkey`)."""
    raw = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode("ascii")


def public_key_of(private_key):
    """The base64 public key of a base64 private key, as `wg pubkey` computes it.

    Needs cryptography (callers without it run `wg pubkey`). X25519 clamps the
    scalar itself, exactly as `wg pubkey` does, so unclamped keys give the same answer.
    """
    private = X25519PrivateKey.from_private_bytes(base64.b64decode(private_key))
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")
