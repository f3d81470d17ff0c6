"""What the worker needs from WireGuard, whichever implementation runs the interface."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from wgmesh.worker.errors import KernelError

log = logging.getLogger(__name__)

UAPI_SOCKET_DIR = "/var/run/wireguard"
BACKENDS = ("auto", "kernel", "userspace")


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


def link_kind(ifname: str) -> str | None:
    """The rtnetlink link kind ('wireguard', 'tun', ...) or None when the interface is absent."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = ipr.link("get", ifname=ifname) if _exists(ipr, ifname) else []
        for link in links:
            info = link.get_attr("IFLA_LINKINFO")
            return info.get_attr("IFLA_INFO_KIND") if info is not None else ""
    return None


def _exists(ipr, ifname: str) -> bool:
    return bool(ipr.link_lookup(ifname=ifname))


class BackendSelector:
    """Picks kernel or userspace per interface (config `worker.backend`), once per interface name."""

    def __init__(self, mode: str = "auto", uapi_dir: str = UAPI_SOCKET_DIR):
        if mode not in BACKENDS:
            raise ValueError(f"unknown WireGuard backend {mode!r}: expected one of {', '.join(BACKENDS)}")
        self.mode = mode
        self.uapi_dir = uapi_dir
        self._cache: dict[str, WireGuardBackend] = {}

    def for_interface(self, ifname: str) -> WireGuardBackend:
        backend = self._cache.get(ifname)
        if backend is None:
            backend = self._choose(ifname)
            self._cache[ifname] = backend
            log.info("interface %s: WireGuard backend %s", ifname, backend.name)
        return backend

    def forget(self, ifname: str) -> None:
        """Choose again next time (the interface vanished or changed kind)."""
        self._cache.pop(ifname, None)

    def _choose(self, ifname: str) -> WireGuardBackend:
        from wgmesh.worker.kernel import KernelBackend
        from wgmesh.worker.uapi import UapiBackend

        if self.mode == "kernel":
            return KernelBackend()
        if self.mode == "userspace":
            return UapiBackend(self.uapi_dir)
        kind = link_kind(ifname)
        if kind is None:
            raise InterfaceMissing(f"interface {ifname} does not exist")
        if kind == "wireguard":
            return KernelBackend()
        if os.path.exists(uapi_socket_path(ifname, self.uapi_dir)):
            return UapiBackend(self.uapi_dir)
        raise BackendError(
            f"interface {ifname} is neither kernel WireGuard (kind {kind or 'none'!r}) "
            f"nor has a userspace socket {uapi_socket_path(ifname, self.uapi_dir)}"
        )
