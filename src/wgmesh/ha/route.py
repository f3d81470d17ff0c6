"""The source route of an HA pair: WireGuard's packets leave from the virtual address (VIP).

A node learns its gateway's endpoint from the packets it receives. If the new active member's
handshake initiation left from the member's own address, the node would move its endpoint
there and stop following the VIP (docs/ha.md). So, while a member holds the VIP:

- every WireGuard interface marks its UDP packets with `fwmark` (the worker never sets one);
- a rule `fwmark <mark> lookup <table>` sends marked packets to a table of their own;
- that table holds copies of the main table's routes out of the VIP's interface, with the VIP
  as preferred source.

The main table is never touched, so nothing else on the host changes. Removing the VIP does
not reliably take these routes along (Linux 6.18 keeps routes whose preferred source is gone
when they sit in a table of their own), so demotion must remove them: `wgmesh-ha demote` (or
`wgmesh-ha route remove`) from keepalived's BACKUP/FAULT/STOP notify. With the table empty,
marked packets fall through to the main table.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from wgmesh.worker.errors import KernelError

MAIN_TABLE = 254
RTN_UNICAST = 1
# Defaults: free of the numbers iproute2 reserves (253-255) and of wg-quick's (51820).
DEFAULT_TABLE = 5180
DEFAULT_FWMARK = 0x5180
DEFAULT_PRIORITY = 5180

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class RouteError(KernelError):
    """The source route could not be installed; the message names the address or route."""


@dataclass(frozen=True)
class SourceRoute:
    vips: tuple[IP, ...]
    table: int = DEFAULT_TABLE
    fwmark: int = DEFAULT_FWMARK
    priority: int = DEFAULT_PRIORITY

    def install(self) -> list[str]:
        """Rule and table for every VIP; returns what the table now holds (for the log)."""
        with IPRoute() as ipr:
            done = []
            for vip in self.vips:
                done += self._install_one(ipr, vip)
            return done

    def remove(self) -> None:
        """Empty the table and drop the rule; what is gone already is fine."""
        with IPRoute() as ipr:
            for family in {_family(v) for v in self.vips} or {socket.AF_INET, socket.AF_INET6}:
                for route in self._table_routes(ipr, family):
                    _tolerant(lambda r=route: ipr.route("del", **_route_spec(r, self.table)))
                _tolerant(
                    lambda f=family: ipr.rule(
                        "del", family=f, priority=self.priority, fwmark=self.fwmark, table=self.table
                    )
                )

    # --- one address family ----------------------------------------------------------
    def _install_one(self, ipr: IPRoute, vip: IP) -> list[str]:
        family = _family(vip)
        index = _interface_of(ipr, vip)
        wanted = [
            {**_route_spec(r, self.table), "prefsrc": str(vip)}
            for r in ipr.get_routes(family=family, table=MAIN_TABLE)
            if r.get_attr("RTA_OIF") == index and r["type"] == RTN_UNICAST and not _is_link_local(r)
        ]
        if not wanted:
            raise RouteError(f"no route in the main table leaves through the interface of {vip} (#{index})")
        for spec in wanted:
            try:
                ipr.route("replace", **spec)
            except NetlinkError as exc:
                raise RouteError(f"route {_describe(spec)} table {self.table} src {vip}: {exc}") from None
        keep = {(s.get("dst"), s["dst_len"]) for s in wanted}
        for route in self._table_routes(ipr, family):  # left from an earlier, different main table
            if (route.get_attr("RTA_DST"), route["dst_len"]) not in keep:
                _tolerant(lambda r=route: ipr.route("del", **_route_spec(r, self.table)))
        if not self._has_rule(ipr, family):
            try:
                ipr.rule("add", family=family, priority=self.priority, fwmark=self.fwmark, table=self.table)
            except NetlinkError as exc:
                raise RouteError(f"rule fwmark {self.fwmark:#x} lookup {self.table}: {exc}") from None
        return [f"{_describe(s)} src {vip}" for s in wanted]

    def _table_routes(self, ipr: IPRoute, family: int) -> list:
        return [r for r in ipr.get_routes(family=family, table=self.table) if r.get_attr("RTA_TABLE") == self.table]

    def _has_rule(self, ipr: IPRoute, family: int) -> bool:
        for rule in ipr.get_rules(family=family):
            if (
                rule.get_attr("FRA_PRIORITY") == self.priority
                and rule.get_attr("FRA_FWMARK") == self.fwmark
                and rule.get_attr("FRA_TABLE") == self.table
            ):
                return True
        return False


def _family(vip: IP) -> int:
    return socket.AF_INET6 if vip.version == 6 else socket.AF_INET


def _interface_of(ipr: IPRoute, vip: IP) -> int:
    for msg in ipr.get_addr(family=_family(vip)):
        if ipaddress.ip_address(msg.get_attr("IFA_ADDRESS")) == vip:
            return msg["index"]
    raise RouteError(f"virtual address {vip} is on no interface of this host (keepalived adds it before notify)")


def _is_link_local(route) -> bool:
    dst = route.get_attr("RTA_DST")
    return dst is not None and ipaddress.ip_address(dst).is_link_local


def _route_spec(route, table: int) -> dict:
    """The fields that identify a route, for replace/del in `table`."""
    spec = {
        "family": route["family"],
        "dst_len": route["dst_len"],
        "table": table,
        "scope": route["scope"],
        "oif": route.get_attr("RTA_OIF"),
    }
    for attr, name in (("RTA_DST", "dst"), ("RTA_GATEWAY", "gateway")):
        value = route.get_attr(attr)
        if value is not None:
            spec[name] = value
    return spec


def _describe(spec: dict) -> str:
    dst = f"{spec['dst']}/{spec['dst_len']}" if "dst" in spec else "default"
    via = f" via {spec['gateway']}" if "gateway" in spec else ""
    return f"{dst}{via} dev #{spec['oif']}"


def _tolerant(action) -> None:
    try:
        action()
    except NetlinkError as exc:
        if exc.code not in (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL):
            raise RouteError(str(exc)) from None


def parse_vips(values: Iterable[str]) -> tuple[IP, ...]:
    """--vip values as addresses; ValueError names the bad one."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"--vip {value!r} is not an IPv4 or IPv6 address") from None
    if len({v.version for v in out}) != len(out):
        raise ValueError("give at most one --vip per address family")
    return tuple(out)
