# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``wg`` command line tool as the modules use it.

Going through ``wg`` (instead of netlink) makes the modules work with kernel
WireGuard and with userspace implementations such as wireguard-go alike.

Reading: one ``wg show <if> dump``. Writing: one ``wg addconf <if> /dev/stdin``
for every added or changed peer (a pipe, so no size limit and no secret in argv
or on disk) plus ``wg set <if> peer K remove ...`` for removals, split only when
the argument list would come near the kernel's limit.

The dump carries the interface private key and every preshared key: the parser
drops the private key at once, and nothing here puts a preshared key into a
string that leaves the module (diffs show only whether one is set).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import socket

from ansible_collections.freifunk.wgmesh.plugins.module_utils._wgkey import KEY_RE

# An all-zero preshared key is how WireGuard spells "no preshared key"; the config
# file format has no other way to clear one.
ZERO_KEY = "A" * 43 + "="
# Bytes of arguments per `wg set` call: well under ARG_MAX (2 MiB on Linux),
# leaving room for the environment.
ARGV_BUDGET = 1024 * 1024


class WgError(Exception):
    """A ``wg`` invocation failed; the message carries its stderr."""


class Peer:
    """A peer as WireGuard holds it, normalized for comparison.

    ``allowed_ips`` is a frozenset of canonical network strings, ``endpoint`` a
    canonical ``ip:port`` / ``[ip6]:port`` string or None, ``persistent_keepalive``
    an int (0 = off), ``preshared_key`` the base64 key or None (never shown).
    """

    __slots__ = ("allowed_ips", "endpoint", "persistent_keepalive", "preshared_key", "public_key")

    def __init__(self, public_key, allowed_ips=frozenset(), endpoint=None, persistent_keepalive=0, preshared_key=None):
        self.public_key = public_key
        self.allowed_ips = allowed_ips
        self.endpoint = endpoint
        self.persistent_keepalive = persistent_keepalive
        self.preshared_key = preshared_key

    def describe(self, psk_note=None):
        """wg-config-like text without secrets, for diffs."""
        lines = ["[Peer] %s" % self.public_key]
        lines.append("AllowedIPs = %s" % (", ".join(sort_networks(self.allowed_ips)) or "(none)"))
        lines.append("Endpoint = %s" % (self.endpoint or "(none)"))
        lines.append("PersistentKeepalive = %s" % (self.persistent_keepalive or "off"))
        psk = "(set)" if self.preshared_key else "(none)"
        lines.append("PresharedKey = %s" % (psk_note or psk))
        return "\n".join(lines) + "\n"


def _network_sort_key(network):
    address, _slash, prefix = network.partition("/")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return (family == socket.AF_INET6, socket.inet_pton(family, address), int(prefix))


def sort_networks(networks):
    """Stable, readable order of canonical networks: IPv4 first, then by address and prefix."""
    return sorted(networks, key=_network_sort_key)


def normalize_network(value):
    """Canonical ``address/prefix`` string; host bits are masked as WireGuard does.

    ``fe80::0f57`` and ``fe80::f57/128`` both become ``fe80::f57/128``. Uses
    inet_pton/inet_ntop (the functions ``wg`` prints with) rather than the
    ipaddress module, which is twenty times slower for 10,000 peers.
    """
    if not isinstance(value, str):
        raise ValueError("must be a string like 10.0.0.1/32 or fe80::1/128, got %s" % type(value).__name__)
    address, slash, prefix = value.strip().partition("/")
    family, bits = (socket.AF_INET6, 128) if ":" in address else (socket.AF_INET, 32)
    try:
        packed = socket.inet_pton(family, address)
    except (OSError, ValueError):
        raise ValueError("%r is not an IP network: %r is not an IPv4 or IPv6 address" % (value, address)) from None
    if slash:
        if not (prefix.isascii() and prefix.isdigit() and int(prefix) <= bits):
            raise ValueError("%r is not an IP network: prefix length must be 0-%d" % (value, bits))
        length = int(prefix)
    else:
        length = bits
    if length < bits:
        host_bits = bits - length
        number = int.from_bytes(packed, "big") >> host_bits << host_bits
        packed = number.to_bytes(bits // 8, "big")
    return "%s/%d" % (socket.inet_ntop(family, packed), length)


def split_endpoint(value):
    """Split ``host:port`` / ``[ip6]:port`` into (host, port), validating both."""
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string like 192.0.2.1:51820, [2001:db8::1]:51820 or host:port")
    match = re.match(r"\A\[([^\]]+)\]:(\d+)\Z", value) or re.match(r"\A([^:\[\]\s]+):(\d+)\Z", value)
    if not match:
        raise ValueError("%r is not host:port (write IPv6 addresses in brackets: [2001:db8::1]:51820)" % value)
    host, port = match.group(1), int(match.group(2))
    if not 1 <= port <= 65535:
        raise ValueError("%r has port %d outside 1-65535" % (value, port))
    return host, port


def format_endpoint(address, port):
    """Canonical ``ip:port`` / ``[ip6%scope]:port``; ValueError if ``address`` is no IP literal."""
    host, percent, scope = address.partition("%")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        host = socket.inet_ntop(family, socket.inet_pton(family, host))
    except (OSError, ValueError):
        raise ValueError("%r is not an IP address" % address) from None
    if family == socket.AF_INET6:
        return "[%s%s%s]:%d" % (host, percent, scope, port)
    return "%s:%d" % (host, port)


def endpoint_forms(value, resolve=socket.getaddrinfo):
    """Every canonical ``ip:port`` the endpoint ``value`` may show up as in a dump.

    An IP literal has one form. A host name has one per address it resolves to
    (``wg`` resolves names itself and stores whichever address it got), so the
    name must resolve on the target: an unresolvable name is an input error.
    """
    host, port = split_endpoint(value)
    try:
        return frozenset([format_endpoint(host, port)])
    except ValueError:
        pass
    try:
        infos = resolve(host, port, 0, socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        raise ValueError("%r: host name %r does not resolve on the target: %s" % (value, host, exc)) from None
    return frozenset(format_endpoint(info[4][0], port) for info in infos)


def parse_dump(text):
    """Parse ``wg show <if> dump`` into (interface dict, {public_key: Peer}).

    The interface line's private key is dropped here; the dict keeps the public
    key, listen port and fwmark. Lines are never quoted in errors: they hold keys.
    """
    lines = text.splitlines()
    if not lines:
        raise WgError("wg show dump printed nothing")
    fields = lines[0].split("\t")
    if len(fields) != 4:
        raise WgError("unexpected interface line in wg show dump (%d fields, expected 4)" % len(fields))
    interface = {
        "public_key": None if fields[1] == "(none)" else fields[1],
        "listen_port": int(fields[2]),
        "fwmark": None if fields[3] == "off" else fields[3],
    }
    peers = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 8:
            raise WgError("unexpected peer line %d in wg show dump (%d fields, expected 8)" % (number, len(fields)))
        try:
            peer = _dump_peer(fields)
        except ValueError as exc:
            # The message names a field value (endpoint, network, keepalive), never the PSK.
            raise WgError("unexpected peer line %d in wg show dump: %s" % (number, exc)) from None
        peers[peer.public_key] = peer
    return interface, peers


def _dump_peer(fields):
    key, psk, endpoint, allowed, _handshake, _rx, _tx, keepalive = fields
    # wg prints endpoints as getnameinfo gave them; bring them to our canonical form.
    endpoint = None if endpoint == "(none)" else format_endpoint(*split_endpoint(endpoint))
    if allowed == "(none)":
        allowed_ips = frozenset()
    else:
        allowed_ips = frozenset(normalize_network(network) for network in allowed.split(","))
    return Peer(
        key,
        allowed_ips=allowed_ips,
        endpoint=endpoint,
        persistent_keepalive=0 if keepalive == "off" else int(keepalive),
        preshared_key=None if psk == "(none)" else psk,
    )


def read_key_file(path):
    """Read a key file as ``wg`` does (trailing whitespace ignored); '' if empty.

    Raises ValueError without quoting the content: the file holds a secret.
    """
    with open(path, "rb") as handle:
        content = handle.read(4096).rstrip()
    try:
        content = content.decode("ascii")
    except UnicodeDecodeError:
        content = None
    if content is None or (content and not KEY_RE.match(content)):
        raise ValueError(
            "%s does not hold a WireGuard key (expected 44 characters of base64 ending in '='; "
            "an empty file means no key)" % path
        )
    return content


def addconf_text(peers):
    """Config text for ``wg addconf``: one [Peer] section per desired Peer.

    In a config file a peer's AllowedIPs always replace the old ones (omitting
    the line clears them); Endpoint, PersistentKeepalive and PresharedKey are
    only touched when present, so None leaves them as they are.
    """
    out = []
    for peer in peers:
        out.append("[Peer]\nPublicKey = %s\n" % peer.public_key)
        if peer.allowed_ips:
            out.append("AllowedIPs = %s\n" % ", ".join(sort_networks(peer.allowed_ips)))
        if peer.endpoint is not None:
            out.append("Endpoint = %s\n" % peer.endpoint)
        if peer.persistent_keepalive is not None:
            out.append("PersistentKeepalive = %d\n" % peer.persistent_keepalive)
        if peer.preshared_key is not None:
            out.append("PresharedKey = %s\n" % (peer.preshared_key or ZERO_KEY))
    return "".join(out)


def removal_argvs(interface, keys, budget=ARGV_BUDGET):
    """``wg set <if> peer K remove ...`` argument lists, each within ``budget`` bytes."""
    argvs = []
    argv, size = None, 0
    for key in keys:
        clause = ["peer", key, "remove"]
        clause_size = sum(len(part) + 1 for part in clause)
        if argv is None or size + clause_size > budget:
            argv = ["wg", "set", interface]
            size = sum(len(part) + 1 for part in argv)
            argvs.append(argv)
        argv.extend(clause)
        size += clause_size
    return argvs


class WgTool:
    """Runs ``wg`` through a ``run(argv, data=None) -> (rc, stdout, stderr)`` callable.

    Modules pass a wrapper around AnsibleModule.run_command; tests and the
    benchmark pass one around subprocess.
    """

    def __init__(self, run, interface):
        self.run = run
        self.interface = interface

    def _check(self, argv, data=None, what=None):
        rc, out, err = self.run(argv, data=data)
        if rc != 0:
            raise WgError(
                "%s failed (rc=%d): %s" % (what or " ".join(argv[:3]), rc, (err or out or "").strip() or "no output")
            )
        return out

    def dump(self):
        out = self._check(["wg", "show", self.interface, "dump"])
        return parse_dump(out)

    def addconf(self, peers):
        """Add or update ``peers`` in one ``wg addconf`` call fed through a pipe."""
        if peers:
            self._check(["wg", "addconf", self.interface, "/dev/stdin"], data=addconf_text(peers))

    def remove(self, keys):
        for argv in removal_argvs(self.interface, keys):
            self._check(argv, what="wg set %s peer ... remove" % self.interface)
