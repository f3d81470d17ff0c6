# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Interface names per mesh domain: the one place the patterns live.

Domain ``ffmuc_welt`` with prefix ``ffmuc_`` gives wg-welt, vx-welt, bat-welt and
br-welt (docs/derivation.md). The daemons' twin is wgmesh.derive.interface_names;
hack/check_twins.py keeps the length limit and the patterns equal.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# kind -> name pattern; the order is the order interfaces are stacked.
IFNAME_PATTERNS = (("wg", "wg-{0}"), ("vx", "vx-{0}"), ("bat", "bat-{0}"), ("br", "br-{0}"))
KINDS = tuple(kind for kind, dummy in IFNAME_PATTERNS)
# Linux IFNAMSIZ is 16 bytes including the terminating NUL.
IFNAME_MAX_BYTES = 15


def ifname_problem(name):
    """Why Linux would refuse ``name`` as an interface name, or None.

    Mirrors the kernel's dev_valid_name(); '%' is refused too because the kernel
    treats a name containing it as a template ("wg%d") and picks another name.
    """
    size = len(name.encode("utf-8"))
    if size == 0:
        return "is empty"
    if size > IFNAME_MAX_BYTES:
        return "is %d bytes long, Linux allows at most %d" % (size, IFNAME_MAX_BYTES)
    if name in (".", ".."):
        return "is a path component"
    for char in name:
        if char in "/:%" or char.isspace():
            return "contains %r, which Linux refuses in interface names" % char
    return None


def _check_prefixes(prefixes):
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    if not isinstance(prefixes, (list, tuple)) or not prefixes:
        raise ValueError("domain prefixes must be a non-empty list of strings, got %r" % (prefixes,))
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("domain prefixes must be non-empty strings, got %r" % (prefix,))
    return list(prefixes)


def domain_suffix(domain, prefixes):
    """The domain without the longest configured prefix it starts with."""
    if not isinstance(domain, str):
        raise ValueError("domain must be a string, got %s" % type(domain).__name__)
    prefixes = _check_prefixes(prefixes)
    matching = [p for p in prefixes if domain.startswith(p) and len(domain) > len(p)]
    if not matching:
        raise ValueError(
            "domain %r does not start with any configured prefix (%s) followed by a name"
            % (domain, ", ".join(repr(p) for p in prefixes))
        )
    return domain[len(max(matching, key=len)) :]


def interface_names(domain, prefixes):
    """Dict kind -> interface name for ``domain``; ValueError naming any bad name."""
    suffix = domain_suffix(domain, prefixes)
    names = {}
    for kind, pattern in IFNAME_PATTERNS:
        name = pattern.format(suffix)
        problem = ifname_problem(name)
        if problem:
            raise ValueError("interface name %r for domain %r %s" % (name, domain, problem))
        names[kind] = name
    return names


def interface_name(domain, prefixes, kind):
    """One interface name of ``kind`` (wg, vx, bat, br) for ``domain``."""
    if kind not in KINDS:
        raise ValueError("unknown interface kind %r: expected one of %s" % (kind, ", ".join(KINDS)))
    return interface_names(domain, prefixes)[kind]
