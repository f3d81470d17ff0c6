# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Derivations from WireGuard keys and domain seeds (docs/derivation.md).

The controller's copy of the rules the nodes use. The daemons' twin is
src/wgmesh/derive.py; both are tested against tests/vectors/derivation.json.
These functions derive from any text (the upstream vectors include the string
``public_key``); callers check keys first with _wgkey.check_public_key.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import re

# "ffmuc": md5 over key + "\n" (FFMUC's Gluon client and wgkex hash the output
# of `wg pubkey`, newline included); "gluon": upstream gluon-mesh-vpn-wireguard
# hashes the bare key.
RULES = ("ffmuc", "gluon")
# Gluon's domain_seed_bytes() key for the VXLAN id, per rule.
VNI_SEED_KEYS = {"ffmuc": "gluon-mesh-vpn-vxlan", "gluon": "gluon-mesh-vxlan"}
# Gluon's site check: domain_seed is 32 random bytes written as 64 hex digits.
SEED_RE = re.compile(r"\A[0-9a-fA-F]{64}\Z")
_LINK_LOCAL_PREFIX = bytes.fromhex("fe80000000000000")


def _md5hex(text):
    # md5 is what the nodes use: an identifier, not a security boundary.
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324  # nosec


def check_rule(rule):
    """Return ``rule`` if it is a known derivation rule, else raise ValueError."""
    if rule not in RULES:
        raise ValueError("unknown derivation rule %r: expected one of %s" % (rule, ", ".join(repr(r) for r in RULES)))
    return rule


def _digest(key, rule):
    check_rule(rule)
    return _md5hex(key + "\n" if rule == "ffmuc" else key)


def mac_from_key(key, rule="ffmuc"):
    """MAC ``02:`` + the first five bytes of the digest."""
    h = _digest(key, rule)
    return "02:" + ":".join(h[i : i + 2] for i in range(0, 10, 2))


def lladdr_from_key(key, rule="ffmuc"):
    """fe80::/64 address from the EUI-64 of the key's MAC, as an IPv6Address.

    EUI-64 inserts ff:fe in the middle of the MAC; the first byte stays 02
    (the nodes do not flip the universal/local bit).
    """
    h = _digest(key, rule)
    iid = bytes.fromhex("02" + h[0:4] + "fffe" + h[4:10])
    return ipaddress.IPv6Address(_LINK_LOCAL_PREFIX + iid)


def seed_problem(seed):
    """Return why ``seed`` is not a Gluon domain seed, or None when it is one."""
    if not isinstance(seed, str):
        return "must be a string of 64 hex digits, got %s" % type(seed).__name__
    if SEED_RE.match(seed):
        return None
    if seed != seed.strip():
        return "has leading or trailing whitespace"
    bad = sorted(set(c for c in seed if c not in "0123456789abcdefABCDEF"))
    if bad:
        return "contains non-hex characters %s" % ", ".join(repr(c) for c in bad)
    return "must be 64 hex digits (32 bytes), got %d" % len(seed)


def vni_from_seed(seed, rule="ffmuc"):
    """Gluon's domain_seed_bytes(key, 3) read as an integer: a 24-bit VNI.

    v_i = md5hex(v_{i-1} + key + lower(seed) + str(i)), v_0 = "", output is
    v_1 + v_2 + ... cut to the bytes wanted; one round already gives 16 bytes.
    """
    check_rule(rule)
    problem = seed_problem(seed)
    if problem:
        raise ValueError("domain seed %r %s" % (seed, problem))
    return int(_md5hex(VNI_SEED_KEYS[rule] + seed.lower() + "1")[:6], 16)


# The interfaces whose MAC an HA pair shares (docs/gateway.md, "HA pairs").
HA_MAC_KINDS = ("bat", "br", "vx")


def ha_mac(identity, domain, kind):
    """The MAC both members of pair ``identity`` give interface ``kind`` of ``domain``.

    md5 of "<identity>\\n<domain>\\n<kind>\\n", its first six bytes, with the first
    byte's multicast bit cleared and its locally administered bit set: stable
    across rebuilds and the same on both members, without any state to share.
    """
    for what, value in (("pair identity", identity), ("domain", domain)):
        if not isinstance(value, str) or not value:
            raise ValueError("%s must be a non-empty string, got %r" % (what, value))
    if kind not in HA_MAC_KINDS:
        raise ValueError("interface kind %r has no pair MAC: expected one of %s" % (kind, ", ".join(HA_MAC_KINDS)))
    digest = bytearray(bytes.fromhex(_md5hex("%s\n%s\n%s\n" % (identity, domain, kind)))[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join("%02x" % b for b in digest)
