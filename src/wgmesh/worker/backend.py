"""What the worker needs from WireGuard, whichever implementation runs the interface."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from wgmesh.worker.errors import KernelError

UAPI_SOCKET_DIR = "/var/run/wireguard"


class BackendError(KernelError):
    """WireGuard refused or could not be reached; the message names the interface."""


class InterfaceMissing(BackendError):
    """The interface does not exist (the gateway role creates it, never the worker)."""


@dataclass(frozen=True)
class Peer:
    public_key: str  # base64, as on the wire
    allowed_ips: tuple[str, ...] = ()
    last_handshake: float = 0.0  # seconds since the epoch; 0 = never
    endpoint: str | None = None
    keepalive: int = 0  # persistent-keepalive interval in seconds; 0 = off


@dataclass(frozen=True)
class Device:
    public_key: str | None
    listen_port: int
    peers: dict[str, Peer] = field(default_factory=dict)
    fwmark: int = 0


@dataclass(frozen=True)
class PeerUpdate:
    """A change to a peer the interface already has (update-only: a peer removed meanwhile
    is not added back). None leaves a field as it is."""

    public_key: str
    endpoint: str | None = None  # "198.51.100.7:51820" or "[2001:db8::7]:51820"
    keepalive: int | None = None


class WireGuardBackend(Protocol):
    name: str

    def device(self, ifname: str) -> Device:
        """Public key, listen port and every peer (with handshake times)."""

    def set_peers(
        self, ifname: str, peers: Iterable[tuple[str, tuple[str, ...]]], replace_allowed_ips: bool = False
    ) -> None:
        """Add or update peers (key, allowed-ips) in as few calls as possible; no endpoint, no keepalive.
        replace_allowed_ips drops a peer's other allowed-ips; only for repairs: wireguard-go
        walks its whole allowed-ips trie per replaced peer (10,000 new peers: 2x slower)."""

    def remove_peers(self, ifname: str, keys: Iterable[str]) -> None:
        """Remove peers; keys that are already gone are not an error."""

    def readd_peers(self, ifname: str, peers: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        """Remove peers and add them back with these allowed-ips, each in the same request: they
        keep no endpoint, no keepalive and no session (WireGuard cannot unset an endpoint)."""

    def update_peers(self, ifname: str, updates: Iterable[PeerUpdate]) -> None:
        """Set endpoints and keepalives of existing peers, in the given order (a key may come
        twice: each entry takes effect before the next, which the HA trigger relies on)."""

    def set_fwmark(self, ifname: str, mark: int) -> None:
        """Mark the interface's UDP packets (policy routing picks their source address)."""


def split_host_port(text: str) -> tuple[str, int]:
    """ "gw2.example.net:51820", "198.51.100.7:51820" or "[2001:db8::7]:51820" -> (host, port), as
    wg(8) takes an endpoint; ValueError says why not. An IPv6 address goes in brackets."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"endpoint {text!r} is not HOST:PORT with a port 1-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(f"endpoint {text!r}: only an IPv6 address goes in brackets")
    elif ":" in host:
        raise ValueError(f"endpoint {text!r}: an IPv6 address goes in brackets")
    return host, int(port)


def split_endpoint(text: str) -> tuple[str, int]:
    """ "198.51.100.7:51820" or "[2001:db8::7]:51820" -> (address, port); ValueError says why not."""
    host, port = split_host_port(text)
    bracketed = text.startswith("[")
    addr = ipaddress.ip_address(host)  # ValueError names the text
    if (addr.version == 6) != bracketed:
        raise ValueError(f"endpoint {text!r}: an IPv6 address goes in brackets, an IPv4 address does not")
    return str(addr), int(port)


def uapi_socket_path(ifname: str, directory: str = UAPI_SOCKET_DIR) -> str:
    return os.path.join(directory, f"{ifname}.sock")
