"""A recreated wg-/vx- link gets the worker's state back at once, without a worker restart.

The gateway role deletes vx-<dom> when its .netdev changes (networkd makes it anew, with no FDB
entries), a restart of wgmesh-wg@ recreates wg-<dom> empty, and a link set down loses its IPv6
routes. The worker watches its links over rtnetlink and reconciles such a domain from its
journal (docs/worker.md). Here the worker runs with a reconcile interval of an hour, so only
that watch can bring the state back. Real wireguard-go, kernel VXLAN and mosquitto, in a
namespace; nothing is mocked.
"""

from __future__ import annotations

import time

from tests.support.gateway import start_workers
from tests.support.keys import new_key
from tests.support.procs import wait_until

NODES = 1000
HOUR = 3600


def _time_until_complete(gw, keys) -> float:
    """Seconds until every peer, route and FDB entry is back (the poll itself takes ~0.1 s)."""
    started = time.monotonic()
    wait_until(lambda: gw.has_all(keys), timeout=60, what=f"all {len(keys)} nodes back\n{gw.log_text()[-3000:]}")
    return time.monotonic() - started


def test_recreated_vxlan_and_wireguard_links_are_repaired_without_a_restart(gateways, mosquitto, publisher, domain):
    (gw,) = start_workers(gateways, mosquitto, publisher, domain, count=1, reconcile_interval=HOUR)
    keys = [new_key() for dummy in range(NODES)]
    publisher.keys(domain, keys)
    wait_until(lambda: gw.has_all(keys), timeout=120, what=f"{NODES} nodes applied")
    pid = gw.worker_proc.pid

    # vx- deleted and made again with the same VNI: what the role does on a changed .netdev
    gw.ns("ip", "link", "del", gw.vx)
    gw.add_vxlan()
    assert not gw.fdb(), "a new VXLAN device starts without FDB entries"
    gap = _time_until_complete(gw, keys)
    print(f"\n{NODES} FDB entries back {gap:.2f} s after vx- was recreated")

    # wg- recreated (its VXLAN device goes with it): peers, routes and FDB entries all gone
    gw.recreate_wireguard()
    assert not gw.peers()
    gap = _time_until_complete(gw, keys)
    print(f"{NODES} peers, routes and FDB entries back {gap:.2f} s after wg- was recreated")

    # wg- set down and up again: the kernel drops its IPv6 routes on the way down
    gw.ns("ip", "link", "set", gw.wg, "down")
    gw.ns("ip", "link", "set", gw.wg, "up")
    assert not gw.routes()
    gap = _time_until_complete(gw, keys)
    print(f"{NODES} routes back {gap:.2f} s after wg- came up again")

    assert gw.worker_proc.poll() is None and gw.worker_proc.pid == pid, "the worker was not restarted"
