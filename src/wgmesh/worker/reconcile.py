"""Pure decisions for one domain: what to add to the kernel and which peers are stale.

No I/O here: the daemon reads the kernel and the journal, asks `plan()`, and carries it out.
Stale means "no handshake for `stale_after` seconds" (a healthy node never registers again,
so registration age says nothing). A peer is never stale within `grace_period` of being added,
registered again, or put back into the kernel by us (a rebooted gateway has no handshakes
yet). Static peers (gateway<->gateway, HA partner) are never touched. On a member of an HA
pair, nothing is stale while it is standby (it sees no handshakes), and no grace period starts
before its promotion.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from wgmesh.worker.backend import Peer

IPv6 = ipaddress.IPv6Address


@dataclass(frozen=True)
class StalePolicy:
    stale_after: float
    grace_period: float


@dataclass
class Plan:
    add_peers: list[str] = field(default_factory=list)  # missing from the interface
    fix_peers: list[str] = field(default_factory=list)  # present, but their allowed-ips differ
    add_links: list[str] = field(default_factory=list)  # route or FDB entry missing
    links_missing: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per add_links key: "route", "fdb"
    remove: list[str] = field(default_factory=list)  # stale: FDB, route and peer go
    remove_lladdrs: dict[str, tuple[IPv6, ...]] = field(default_factory=dict)  # what to undo per stale key


def is_stale(last_handshake: float, since: float, now: float, policy: StalePolicy) -> bool:
    """since: when we (re)added the peer or first saw it. No handshake ever counts from `since`."""
    if now - since < policy.grace_period:
        return False
    last_activity = last_handshake if last_handshake > 0 else since
    return now - last_activity >= policy.stale_after


def host_lladdrs(allowed_ips: Collection[str]) -> tuple[IPv6, ...]:
    """The link-local /128 addresses among a peer's allowed-ips (compared as addresses)."""
    found = []
    for cidr in allowed_ips:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if net.version == 6 and net.prefixlen == 128 and net.network_address.is_link_local:
            found.append(net.network_address)
    return tuple(found)


def plan(
    desired: Mapping[str, float],
    peers: Mapping[str, Peer],
    routes: Collection[IPv6],
    fdb: Collection[IPv6] | None,
    lladdr_of: Callable[[str], IPv6],
    static: Collection[str],
    since: Mapping[str, float],
    now: float,
    policy: StalePolicy,
    active_since: float | None = 0.0,
) -> Plan:
    """desired: journal key -> added-at; since: key -> when this process last put it in the kernel
    or first saw it (unmanaged peers); fdb None when the VXLAN device is absent; active_since:
    when this HA member was promoted (0.0 outside a pair), None while it is standby."""
    result = Plan()
    for key, added_at in desired.items():
        if key in static:
            continue
        lladdr = lladdr_of(key)
        peer = peers.get(key)
        if peer is not None and active_since is not None:
            started = max(added_at, since.get(key, 0.0), active_since)
            if is_stale(peer.last_handshake, started, now, policy):
                result.remove.append(key)
                result.remove_lladdrs[key] = (lladdr,)
                continue
        if peer is None:
            result.add_peers.append(key)
        elif set(host_lladdrs(peer.allowed_ips)) != {lladdr} or len(peer.allowed_ips) != 1:
            result.fix_peers.append(key)
        missing = ("route",) * (lladdr not in routes) + ("fdb",) * (fdb is not None and lladdr not in fdb)
        if missing:
            result.add_links.append(key)
            result.links_missing[key] = missing
    for key, peer in peers.items():
        if key in desired or key in static:
            continue
        # not ours: only ever removed when it is stale too
        if (
            active_since is not None
            and key in since
            and is_stale(peer.last_handshake, max(since[key], active_since), now, policy)
        ):
            result.remove.append(key)
            result.remove_lladdrs[key] = host_lladdrs(peer.allowed_ips)
    return result
