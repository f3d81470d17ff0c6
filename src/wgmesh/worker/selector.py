"""The choice between kernel and userspace WireGuard, per interface (config `worker.backend`).

Apart from backend.py so that kernel.py and uapi.py import the interface they implement and
this module imports them, without a cycle.
"""

from __future__ import annotations

import logging
import os

from wgmesh.config import WORKER_BACKENDS
from wgmesh.worker.backend import UAPI_SOCKET_DIR, BackendError, InterfaceMissing, WireGuardBackend, uapi_socket_path
from wgmesh.worker.kernel import KernelBackend
from wgmesh.worker.uapi import UapiBackend

log = logging.getLogger(__name__)


def link_kind(ifname: str) -> str | None:
    """The rtnetlink link kind ('wireguard', 'tun', ...) or None when the interface is absent."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = ipr.link("get", ifname=ifname) if ipr.link_lookup(ifname=ifname) else []
        for link in links:
            info = link.get_attr("IFLA_LINKINFO")
            return info.get_attr("IFLA_INFO_KIND") if info is not None else ""
    return None


class BackendSelector:
    """Picks kernel or userspace per interface, once per interface name."""

    def __init__(self, mode: str = "auto", uapi_dir: str = UAPI_SOCKET_DIR):
        if mode not in WORKER_BACKENDS:
            raise ValueError(f"unknown WireGuard backend {mode!r}: expected one of {', '.join(WORKER_BACKENDS)}")
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
