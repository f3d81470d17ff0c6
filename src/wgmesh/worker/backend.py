"""What the worker needs from WireGuard, whichever implementation runs the interface."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Device:
    public_key: str | None
    listen_port: int
    peers: dict[str, Peer] = field(default_factory=dict)


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


def uapi_socket_path(ifname: str, directory: str = UAPI_SOCKET_DIR) -> str:
    return os.path.join(directory, f"{ifname}.sock")
