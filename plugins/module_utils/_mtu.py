# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MTU arithmetic for the stack underlay -> WireGuard -> VXLAN -> batman-adv -> clients.

The one place these numbers are computed; docs/mtu.md explains each term.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Outer IP header of the WireGuard UDP packets, per underlay family.
IP_HEADER = {"ipv4": 20, "ipv6": 40}
UDP_HEADER = 8
# WireGuard data message: type+reserved 4, receiver index 4, counter 8, Poly1305 tag 16.
WIREGUARD_HEADER = 32
# VXLAN rides on the link-local IPv6 address of wg-<dom>: IPv6 40 + UDP 8 + VXLAN 8
# + the inner Ethernet header 14 (the kernel's VXLAN6_HEADROOM).
VXLAN_OVERHEAD = 40 + 8 + 8 + 14
# batman-adv: its largest unicast header (batadv_unicast_4addr_packet, 18) + the
# client's Ethernet header 14; Gluon's docs/user/mtu.rst counts the same 32.
BATMAN_OVERHEAD = 18 + 14
# batman-adv caps its soft interface at ETH_DATA_LEN.
BATMAN_MAX = 1500
# What clients are offered (RA / DHCP): the IPv6 minimum link MTU (RFC 8200).
CLIENT_MTU = 1280
# TCP MSS for clamping: MTU minus IP header and TCP header (20).
TCP_HEADER = 20
MAX_UNDERLAY = 65535


def _as_int(value, what):
    # Inventories and -e give strings; bools are ints in Python but never MTUs.
    if isinstance(value, bool):
        raise ValueError("%s must be an integer, got a boolean %r" % (what, value))
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError("%s must be an integer, got %r" % (what, value))


def min_underlay(family):
    """Smallest underlay MTU that carries a CLIENT_MTU packet without fragmenting."""
    return CLIENT_MTU + BATMAN_OVERHEAD + VXLAN_OVERHEAD + WIREGUARD_HEADER + UDP_HEADER + IP_HEADER[family]


def mtus(underlay=1500, family="ipv6"):
    """Dict of MTUs for one mesh domain's interfaces; ValueError on bad input."""
    if family not in IP_HEADER:
        raise ValueError("unknown underlay family %r: expected one of %s" % (family, ", ".join(sorted(IP_HEADER))))
    underlay = _as_int(underlay, "underlay MTU")
    if underlay > MAX_UNDERLAY:
        raise ValueError("underlay MTU %d is larger than an IP packet can be (%d)" % (underlay, MAX_UNDERLAY))
    wireguard = underlay - IP_HEADER[family] - UDP_HEADER - WIREGUARD_HEADER
    vxlan = wireguard - VXLAN_OVERHEAD
    batman = min(vxlan - BATMAN_OVERHEAD, BATMAN_MAX)
    if batman < CLIENT_MTU:
        raise ValueError(
            "underlay MTU %d over %s is too small: batman-adv could carry client packets of %d bytes "
            "without fragmenting, clients need %d; the underlay must be at least %d over %s (%d over %s)"
            % (
                underlay,
                family,
                batman,
                CLIENT_MTU,
                min_underlay(family),
                family,
                min_underlay("ipv4" if family == "ipv6" else "ipv6"),
                "ipv4" if family == "ipv6" else "ipv6",
            )
        )
    return {
        "underlay": underlay,
        "family": family,
        "wireguard": wireguard,
        "vxlan": vxlan,
        "batman": batman,
        "client": CLIENT_MTU,
        "mss_ipv4": batman - IP_HEADER["ipv4"] - TCP_HEADER,
        "mss_ipv6": batman - IP_HEADER["ipv6"] - TCP_HEADER,
    }
