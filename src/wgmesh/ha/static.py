"""The other gateways' configured endpoints, for a promotion that learnt none from the partner.

A pair member declares its static peers (the other gateways) without an endpoint: a standby
must never send to them with the pair's key (docs/ha.md). The gateway role still states where
each one is, in the worker config's `static_peers` (key -> "host:port"). On promotion a static
peer with neither a learnt endpoint nor one of its own (a fresh pair) gets that one. It is
often a host name: it is resolved here, as wg(8) does (the first address getaddrinfo gives),
and only for the peers that need it, so a pair whose partner taught every endpoint asks no
resolver during a takeover. promote.py asks only after every domain's nodes were triggered:
a slow resolver delays no node.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping

from wgmesh.worker.backend import Peer, split_host_port

log = logging.getLogger(__name__)


def needed(
    peers: Mapping[str, Peer], learnt: Mapping[str, str], configured: Mapping[str, str | None]
) -> dict[str, str]:
    """Static peers whose configured endpoint the promotion needs: nothing learnt, none of their own."""
    return {
        key: endpoint
        for key, endpoint in configured.items()
        if endpoint and key in peers and not learnt.get(key) and peers[key].endpoint is None
    }


def resolve(configured: Mapping[str, str], getaddrinfo=socket.getaddrinfo) -> dict[str, str]:
    """key -> "address:port" ("[v6]:port"); a name that does not resolve is logged and left out
    (that gateway then starts the handshake itself, on its next packet to the pair)."""
    out = {}
    for key, endpoint in configured.items():
        host, port = split_host_port(endpoint)
        try:
            infos = getaddrinfo(host, port, 0, socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            log.error("static peer %s: endpoint %s does not resolve (%s); it gets none", key, endpoint, exc)
            continue
        family, address = infos[0][0], infos[0][4][0]
        out[key] = f"[{address}]:{port}" if family == socket.AF_INET6 else f"{address}:{port}"
    return out
