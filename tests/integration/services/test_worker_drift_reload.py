"""Drift deleted by hand: `wgmesh-worker --drift` lists it, SIGHUP puts it back without a restart.

What the worker role runs on every site.yml (docs/worker.md, "Drift"): a node peer, a route
and an FDB entry are deleted by hand on a gateway whose worker reconciles only once an hour;
--drift must name exactly those three and exit with its drift code, and after a SIGHUP (the
unit's ExecReload) the worker, still the same process, has put all three back. Real
wireguard-go, kernel VXLAN and mosquitto in a namespace; nothing is mocked.
"""

from __future__ import annotations

import signal
import socket
import subprocess

from tests.support.gateway import PREFIX, WORKER_BIN, start_workers
from tests.support.keys import new_key
from tests.support.procs import wait_until
from wgmesh import derive

HOUR = 3600
EXIT_IN_SYNC, EXIT_DRIFT = 0, 3  # --drift's documented exit codes (docs/worker.md)
ZERO_MAC = "00:00:00:00:00:00"


def drift(gw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", gw.netns, WORKER_BIN, "--config", str(gw.config_path), "--drift"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_drift_lists_a_peer_a_route_and_an_fdb_entry_deleted_by_hand_and_sighup_repairs_them(
    gateways, mosquitto, publisher, domain
):
    (gw,) = start_workers(gateways, mosquitto, publisher, domain, count=1, reconcile_interval=HOUR)
    keys = [new_key() for dummy in range(5)]
    publisher.keys(domain, keys)
    wait_until(lambda: gw.has_all(keys), timeout=60, what=f"5 nodes applied\n{gw.log_text()[-3000:]}")
    wait_until(lambda: drift(gw).returncode == EXIT_IN_SYNC, timeout=30, what="--drift in sync once applied")
    pid = gw.worker_proc.pid

    lost_peer, lost_route, lost_fdb = keys[:3]
    route_ll = str(derive.lladdr_from_key(lost_route))
    fdb_ll = str(derive.lladdr_from_key(lost_fdb))
    gw.ns("wg", "set", gw.wg, "peer", lost_peer, "remove")
    gw.ns("ip", "-6", "route", "del", f"{route_ll}/128", "dev", gw.wg)
    gw.ns("bridge", "fdb", "del", ZERO_MAC, "dev", gw.vx, "dst", fdb_ll, "via", gw.wg)
    assert lost_peer not in gw.peers() and route_ll not in gw.routes() and fdb_ll not in gw.fdb()

    found = drift(gw)
    assert found.returncode == EXIT_DRIFT, found.stdout + found.stderr
    assert sorted(found.stdout.splitlines()) == sorted(
        [
            f"{domain} {gw.wg} {lost_peer} peer missing",
            f"{domain} {gw.wg} {lost_route} route {route_ll}/128 missing",
            f"{domain} {gw.vx} {lost_fdb} FDB entry dst {fdb_ll} missing",
        ]
    )

    gw.worker_proc.send_signal(signal.SIGHUP)  # what `systemctl reload wgmesh-worker` sends
    wait_until(lambda: gw.has_all(keys), timeout=60, what=f"all 5 nodes back\n{gw.log_text()[-3000:]}")
    again = drift(gw)
    assert (again.returncode, again.stdout) == (EXIT_IN_SYNC, ""), again.stdout + again.stderr
    assert gw.worker_proc.poll() is None and gw.worker_proc.pid == pid, "reloaded, not restarted"
    assert gw.log_text().count("SIGHUP: reconciling every domain now") == 1


def test_the_worker_tells_systemd_it_is_ready_only_once_a_sighup_is_safe(gateways, mosquitto, domain, tmp_path):
    """The unit is Type=notify: `systemctl restart` returns, and a reload may follow, only after
    READY=1. Sent before the SIGHUP handler is set, that reload would end the worker (SIGHUP's
    default action), and systemd counts a SIGHUP exit as clean, so Restart=on-failure would not
    bring it back."""
    notify_path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.settimeout(60)  # a guard against a hang, not a measurement
        gw = gateways()
        gw.write_config(domain, PREFIX, 1883)
        gw.start_worker(mosquitto.port, env={"NOTIFY_SOCKET": notify_path})
        try:
            message = notify.recv(4096)
        except TimeoutError:
            raise AssertionError(f"no READY=1 on NOTIFY_SOCKET\n{gw.log_text()[-3000:]}") from None
    assert message == b"READY=1"
    gw.worker_proc.send_signal(signal.SIGHUP)  # at once, as a reload right after a restart does
    wait_until(lambda: "SIGHUP: reconciling every domain now" in gw.log_text(), timeout=30, what="SIGHUP handled")
    assert gw.worker_proc.poll() is None, "the worker survived the SIGHUP"
