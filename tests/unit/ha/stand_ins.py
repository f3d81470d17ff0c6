"""Stand-ins the HA unit tests share: a backend selector and the domains' interface names."""

from __future__ import annotations

from wgmesh.worker.domains import DomainLinks


class Selector:
    """Hands out one stand-in backend for every interface and records what was forgotten."""

    def __init__(self, backend):
        self.backend = backend
        self.forgotten: list[str] = []

    def for_interface(self, ifname):
        return self.backend

    def forget(self, ifname):
        self.forgotten.append(ifname)


def dom(name: str) -> DomainLinks:
    return DomainLinks(name, f"wg-{name}", f"vx-{name}", "ffmuc")
