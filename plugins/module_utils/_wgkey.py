# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WireGuard key syntax: the one check every plugin uses (DESIGN.md section 2).

A key is base64 of 32 bytes: 43 significant characters, the last of which can
only carry 4 bits, then one "=". The whole string must match; a trailing
newline is not part of a key.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

KEY_RE = re.compile(r"\A[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=\Z")


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


def check_key(value, what="key"):
    """Return ``value`` if it is a WireGuard key, else raise ValueError naming the problem."""
    problem = key_problem(value)
    if problem:
        raise ValueError("%s %r is not a WireGuard key: %s" % (what, value, problem))
    return value
