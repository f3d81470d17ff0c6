"""Routes and VXLAN forwarding entries over rtnetlink (pyroute2 IPRoute).

Per node: `<lladdr>/128 dev wg-<dom>` and, on vx-<dom>, `00:00:00:00:00:00 dst <lladdr>`
with the outgoing interface wg-<dom> (NDA_IFINDEX): the destination is link-local, so the
kernel cannot pick the interface by itself. Removal tolerates entries that are gone already.
Bulk adds and the dumps go through rtnl_bulk.py (thousands of entries per netlink send).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Iterable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from wgmesh.worker.errors import KernelError
from wgmesh.worker.rtnl_bulk import BulkRtnl

log = logging.getLogger(__name__)

ZERO_MAC = "00:00:00:00:00:00"
_GONE = (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)


class LinkError(KernelError):
    """rtnetlink refused a change; the message names the interface and address."""


def _addr(value) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(value)


class Links:
    """One rtnetlink socket, used from one thread (the worker's apply loop)."""

    def __init__(self) -> None:
        self.ipr = IPRoute()
        self.bulk = BulkRtnl()
        self._ifindex: dict[str, int] = {}

    def close(self) -> None:
        self.ipr.close()
        self.bulk.close()

    def ifindex(self, ifname: str) -> int | None:
        """Cached: a lookup costs a netlink round trip per key otherwise. forget() after errors."""
        index = self._ifindex.get(ifname)
        if index is None:
            try:
                found = self.ipr.link_lookup(ifname=ifname)
            except (NetlinkError, OSError) as exc:
                raise LinkError(f"looking up interface {ifname}: {exc}") from None
            index = found[0] if found else None
            if index is not None:
                self._ifindex[ifname] = index
        return index

    def forget(self) -> None:
        """Look interfaces up again (the gateway role may have recreated one)."""
        self._ifindex.clear()

    def link_local(self, ifname: str) -> ipaddress.IPv6Address | None:
        index = self.ifindex(ifname)
        if index is None:
            return None
        try:
            messages = self.ipr.get_addr(family=socket.AF_INET6, index=index)
        except (NetlinkError, OSError) as exc:
            raise LinkError(f"addresses of {ifname}: {exc}") from None
        for msg in messages:
            addr = _addr(msg.get_attr("IFA_ADDRESS"))
            if addr.is_link_local:
                return addr
        return None

    # --- reading (bulk: see rtnl_bulk.py for why not pyroute2 here) ---------------
    def host_routes(self, wg_index: int) -> set[ipaddress.IPv6Address]:
        """Link-local /128 routes through the WireGuard interface (main table)."""
        return self.bulk.host_routes(wg_index)

    def fdb_destinations(self, vx_index: int, wg_index: int) -> set[ipaddress.IPv6Address]:
        """Destinations of the all-zero (flood) entries on the VXLAN device that go via wg."""
        return self.bulk.fdb_destinations(vx_index, wg_index)

    # --- changing ----------------------------------------------------------
    def add_route(self, lladdr: ipaddress.IPv6Address, wg_index: int) -> None:
        try:
            self.ipr.route("replace", dst=f"{lladdr}/128", oif=wg_index, family=socket.AF_INET6)
        except NetlinkError as exc:
            raise LinkError(f"route {lladdr}/128 dev #{wg_index}: {exc}") from None

    def del_route(self, lladdr: ipaddress.IPv6Address, wg_index: int) -> None:
        try:
            self.ipr.route("del", dst=f"{lladdr}/128", oif=wg_index, family=socket.AF_INET6)
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise LinkError(f"delete route {lladdr}/128 dev #{wg_index}: {exc}") from None

    def add_fdb(self, lladdr: ipaddress.IPv6Address, vx_index: int, wg_index: int) -> None:
        try:
            self.ipr.fdb("append", ifindex=vx_index, lladdr=ZERO_MAC, dst=str(lladdr), NDA_IFINDEX=wg_index)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:  # the same entry twice is what we want
                raise LinkError(f"fdb {ZERO_MAC} dst {lladdr} dev #{vx_index}: {exc}") from None

    def del_fdb(self, lladdr: ipaddress.IPv6Address, vx_index: int, wg_index: int) -> None:
        # the kernel matches the remote by dst AND outgoing ifindex: without it nothing is deleted
        try:
            self.ipr.fdb("del", ifindex=vx_index, lladdr=ZERO_MAC, dst=str(lladdr), NDA_IFINDEX=wg_index)
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise LinkError(f"delete fdb dst {lladdr} dev #{vx_index}: {exc}") from None

    def add_many(
        self, lladdrs: Iterable[ipaddress.IPv6Address], wg_index: int, vx_index: int | None
    ) -> list[tuple[ipaddress.IPv6Address, Exception]]:
        """Route (and FDB entry when the VXLAN device exists) for each address, thousands per
        netlink send; what the kernel refused is returned per address, never raised."""
        lladdrs = list(lladdrs)
        failed = [
            (a, LinkError(f"route {a}/128 dev #{wg_index}: {os.strerror(code)}"))
            for a, code in self.bulk.replace_routes(lladdrs, wg_index)
        ]
        if vx_index is not None:
            failed += [
                (a, LinkError(f"fdb {ZERO_MAC} dst {a} dev #{vx_index} via #{wg_index}: {os.strerror(code)}"))
                for a, code in self.bulk.append_fdb(lladdrs, vx_index, wg_index)
            ]
        return failed
