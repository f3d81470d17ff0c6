"""Derivations from keys and domains shared with the nodes (docs/derivation.md).

The Ansible filters in plugins/ implement the same rules for the controller;
both are tested against tests/vectors/derivation.json, and hack/check_twins.py
proves their shared constants equal.
"""

from __future__ import annotations

import hashlib
import ipaddress

# "ffmuc": md5 over key + "\n" (FFMUC's client, wgkex); "gluon": upstream
# gluon-mesh-vpn-wireguard hashes the bare key.
RULES = ("ffmuc", "gluon")
DEFAULT_RULE = "ffmuc"  # what a domain without an explicit rule uses
VNI_SEED_KEYS = {"ffmuc": "gluon-mesh-vpn-vxlan", "gluon": "gluon-mesh-vxlan"}
LINK_LOCAL_PREFIX = bytes.fromhex("fe80000000000000")


def _digest(key: str, rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"unknown derivation rule {rule!r}: expected one of {', '.join(RULES)}")
    data = key + "\n" if rule == "ffmuc" else key
    return hashlib.md5(data.encode(), usedforsecurity=False).hexdigest()


def mac_from_key(key: str, rule: str = DEFAULT_RULE) -> str:
    h = _digest(key, rule)
    return "02:" + ":".join(h[i : i + 2] for i in range(0, 10, 2))


def lladdr_from_key(key: str, rule: str = DEFAULT_RULE) -> ipaddress.IPv6Address:
    """fe80::/64 address from the EUI-64 of the key's MAC (no U/L bit flip)."""
    h = _digest(key, rule)
    iid = bytes.fromhex("02" + h[0:4] + "fffe" + h[4:10])
    return ipaddress.IPv6Address(LINK_LOCAL_PREFIX + iid)


def vni_from_seed(domain_seed: str, rule: str = DEFAULT_RULE) -> int:
    """Gluon's domain_seed_bytes(key, 3) read as an integer (a 24-bit VNI).

    Gluon chains md5 rounds v_i = md5hex(v_{i-1} + key + lower(seed) + str(i)) until it
    has enough bytes; one round gives 16, so three bytes need only v_1.
    """
    if rule not in VNI_SEED_KEYS:
        raise ValueError(f"unknown derivation rule {rule!r}: expected one of {', '.join(RULES)}")
    v1 = hashlib.md5((VNI_SEED_KEYS[rule] + domain_seed.lower() + "1").encode(), usedforsecurity=False).hexdigest()
    return int(v1[:6], 16)


# Interface names per domain: the domain minus its prefix, behind a kind tag.
# The controller's twin is plugins/module_utils/_naming.py (same vectors).
IFNAME_KINDS = {"wg": "wg-{}", "vx": "vx-{}", "bat": "bat-{}", "br": "br-{}"}
IFNAMSIZ = 15  # Linux: 16 bytes including the terminating NUL; counted in bytes


def domain_suffix(domain: str, prefixes: list[str] | tuple[str, ...]) -> str:
    """The domain without the longest configured prefix it starts with."""
    matching = [p for p in prefixes if domain.startswith(p) and len(domain) > len(p)]
    if not matching:
        raise ValueError(f"domain {domain!r} does not start with any configured prefix ({', '.join(prefixes)})")
    return domain[len(max(matching, key=len)) :]


def ifname_problem(name: str) -> str | None:
    """Why Linux would refuse ``name`` as an interface name (dev_valid_name()), or None.

    '%' is refused too: the kernel takes such a name as a template ("wg%d").
    """
    size = len(name.encode())
    if size == 0:
        return "is empty"
    if size > IFNAMSIZ:
        return f"is {size} bytes long, Linux allows at most {IFNAMSIZ}"
    if name in (".", ".."):
        return "is a path component"
    bad = next((c for c in name if c in "/:%" or c.isspace()), None)
    return f"contains {bad!r}, which Linux refuses in interface names" if bad else None


def interface_names(domain: str, prefixes: list[str] | tuple[str, ...]) -> dict[str, str]:
    suffix = domain_suffix(domain, prefixes)
    names = {kind: pattern.format(suffix) for kind, pattern in IFNAME_KINDS.items()}
    for name in names.values():
        problem = ifname_problem(name)
        if problem:
            raise ValueError(f"interface name {name!r} for domain {domain!r} {problem}")
    return names
