"""Abuse controls (wgkex issue #38): per-client rate limit, per-domain key lists.

Client address: the TCP peer, unless that peer is a configured trusted proxy
(broker.trusted_proxies); then the right-most X-Forwarded-For entry that is
not itself a trusted proxy. Without trusted proxies the header is ignored, so
a client cannot pick its own rate-limit bucket. IPv6 clients share a bucket
per /64: one host usually holds a whole /64 and could otherwise rotate.

A loopback peer that is not a trusted proxy is not rate-limited at all: it is
almost always a reverse proxy on the same host (wgkex's setup behind nginx),
and one bucket for every node behind it would throttle the whole mesh.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections.abc import Callable

from wgmesh.config import BrokerConfig, RateLimitConfig

MAX_BUCKETS = 100_000  # beyond this, forget clients whose bucket has refilled


class RateLimiter:
    """Token bucket per client: `burst` requests at once, refilled at per_minute/60 per second."""

    def __init__(self, cfg: RateLimitConfig, clock: Callable[[], float] = time.monotonic):
        self.enabled = cfg.enabled
        self.capacity = float(cfg.burst)
        self.rate = cfg.per_client_per_minute / 60.0
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill)

    def check(self, client: str) -> float:
        """0.0 if the request may pass (a token is taken), else seconds until one is free."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        tokens, last = self.buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self.buckets[client] = (tokens - 1.0, now)
            if len(self.buckets) > MAX_BUCKETS:
                self._prune(now)
            return 0.0
        self.buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full_after = self.capacity / self.rate
        self.buckets = {c: (t, last) for c, (t, last) in self.buckets.items() if now - last < full_after}


def bucket_of(client: str) -> str:
    """Rate-limit bucket of a client address: IPv4 as is, IPv6 by /64."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if ip.version == 6:
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return client


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class KeyLists:
    def __init__(self, cfg: BrokerConfig):
        self.blocklist = cfg.blocklist
        self.allowlist = cfg.allowlist

    def refusal(self, domain: str, key: str) -> str | None:
        """Why `key` may not register in `domain`, or None when it may."""
        if key in self.blocklist.get(domain, ()):
            return f"public_key is blocked for domain {domain}"
        allowed = self.allowlist.get(domain)
        if allowed is not None and key not in allowed:
            return f"public_key is not on the allowlist of domain {domain}"
        return None


@functools.lru_cache(maxsize=4096)  # parsed for every request (twice for a loopback peer); nodes come back
def _ip(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    return ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped else ip


class ClientAddress:
    def __init__(self, trusted_proxies: tuple[str, ...]):
        self.proxies = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)

    def _trusted(self, addr: str) -> bool:
        ip = _ip(addr)
        return ip is not None and any(ip in net for net in self.proxies)

    def unlimited(self, peer: str | None) -> bool:
        """True for a loopback peer that is not a trusted proxy: no per-client limit for it."""
        ip = _ip(peer or "")
        return ip is not None and ip.is_loopback and not self._trusted(peer or "")

    def of(self, peer: str | None, forwarded_for: str | None) -> str:
        peer = peer or "unknown"
        if not self.proxies or not forwarded_for or not self._trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else peer
