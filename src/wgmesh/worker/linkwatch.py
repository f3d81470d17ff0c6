"""Watch the worker's own links (wg-<dom>, vx-<dom>) over rtnetlink link events.

A link that appears, comes back under a new ifindex, or is set up again after being down has
lost what the worker put on it: a new WireGuard device has no peers, a new VXLAN device no FDB
entries, and a link that went down lost its IPv6 routes. That happens when the gateway role
recreates a link whose .netdev changed, or when wgmesh-wg@ restarts. The watcher only queues a
LinkChanged for the apply thread, which reconciles that domain at once (daemon.py) instead of
at the next `reconcile_interval` (docs/worker.md).

The watch runs in a thread of its own with pyroute2's asyncio socket (the apply thread's
rtnetlink socket in links.py answers requests; this one only listens).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP

from wgmesh.worker.domains import DomainLinks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkChanged:
    domain: str
    ifname: str
    why: str


class LinkStates:
    """Which link messages mean "what the worker put on this link is gone"."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, bool]] = {}  # ifname -> (ifindex, up)

    def new_link(self, ifname: str, index: int, up: bool) -> str | None:
        """Record an RTM_NEWLINK; return why the link needs the worker's state again, or None."""
        before = self._seen.get(ifname)
        self._seen[ifname] = (index, up)
        if before is None:
            return "appeared"
        if before[0] != index:
            return f"recreated (ifindex {before[0]} -> {index})"
        if up and not before[1]:
            return "came up"
        return None

    def del_link(self, ifname: str, index: int) -> None:
        if self._seen.get(ifname, (None,))[0] == index:
            del self._seen[ifname]


class LinkWatcher:
    """Queues a LinkChanged on `events` for every link of `domains` that needs a reconcile."""

    def __init__(self, domains: Iterable[DomainLinks], events: queue.SimpleQueue):
        self.events = events
        self.domain_of = {}
        for dom in domains:
            self.domain_of[dom.wg] = dom.domain
            self.domain_of[dom.vx] = dom.domain
        self.states = LinkStates()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="linkwatch", daemon=True)

    def start(self) -> None:
        """Returns once the watch listens, so no change after this call goes unseen."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            log.error("link watch failed: %s; recreated links wait for the next reconcile", self._error)

    def close(self) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # the worker goes on with the periodic reconcile
            self._error = exc
            if self._ready.is_set():
                log.error("link watch stopped: %s; recreated links wait for the next reconcile", exc)
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        async with AsyncIPRoute() as ipr:
            await ipr.bind(groups=RTMGRP_LINK)  # before the dump: a change in between is not lost
            async for msg in await ipr.link("dump"):
                self._message(msg, report=False)
            self._ready.set()
            while True:
                async for msg in ipr.get():
                    self._message(msg, report=True)

    def _message(self, msg, report: bool) -> None:
        ifname = msg.get("ifname")
        domain = self.domain_of.get(ifname)
        if domain is None:
            return
        if msg["event"] == "RTM_DELLINK":
            self.states.del_link(ifname, msg["index"])
            return
        if msg["event"] != "RTM_NEWLINK":
            return
        why = self.states.new_link(ifname, msg["index"], bool(msg["flags"] & IFF_UP))
        if why is not None and report:
            log.info("domain %s: %s %s", domain, ifname, why)
            self.events.put(LinkChanged(domain, ifname, why))
