"""The worker with a journal on a disk that fills up and recovers (real ENOSPC on a tmpfs).

Real mosquitto (its in-flight window of 20 unacknowledged messages per client is what turned
one failed write into a stall) and wireguard-go in a namespace, from worker_fixtures. The
tmpfs is mounted before the worker starts, so the worker's own mount namespace (`ip netns
exec` makes one) holds it too; filling and emptying it is seen by both.
"""

from __future__ import annotations

import contextlib
import errno
import json
import sys

import pytest
from worker_fixtures import (  # noqa: F401 (pytest fixtures)  # pylint: disable=unused-import
    domain,
    gateways,
    new_key,
    publisher,
    run,
    start_workers,
    wait_until,
)

METRICS = "127.0.0.1:9561"  # inside the gateway's own namespace
FETCH = """
import json, sys, urllib.error, urllib.request
def get(path):
    try:
        with urllib.request.urlopen(f"http://{sys.argv[1]}{path}") as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
status, health = get("/health")
try:
    health = json.loads(health)
except ValueError:
    health = {"status": None, "body": health[:200]}
print(json.dumps({"status": status, "health": health, "metrics": get("/metrics")[1]}))
"""


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs of our own; fill() makes every write fail with ENOSPC, free() undoes it."""
    mountpoint = tmp_path / "journal-fs"
    mountpoint.mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mountpoint))
    filler = mountpoint / "filler"

    class Disk:
        path = mountpoint

        @staticmethod
        def fill() -> None:
            with open(filler, "ab", buffering=0) as fh, contextlib.suppress(OSError):  # until ENOSPC
                while True:
                    fh.write(b"\0" * 4096)
            with pytest.raises(OSError) as err, open(mountpoint / "probe", "wb", buffering=0) as probe:
                probe.write(b"x" * 8192)
            assert err.value.errno == errno.ENOSPC

        @staticmethod
        def free() -> None:
            filler.unlink()
            (mountpoint / "probe").unlink(missing_ok=True)

    yield Disk
    run("umount", "-l", str(mountpoint), check=False)  # lazily: the worker may still hold it


def state(gw) -> dict:
    return json.loads(gw.ns(sys.executable, "-c", FETCH, METRICS))


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def journal_keys(path) -> set[str]:
    try:
        return {k for keys in json.loads(path.read_text())["domains"].values() for k in keys}
    except (OSError, ValueError):
        return set()


def test_a_full_disk_does_not_stall_the_worker_and_the_journal_catches_up(
    gateways,  # noqa: F811
    mosquitto,
    publisher,  # noqa: F811
    domain,  # noqa: F811
    small_disk,
):
    journal = small_disk.path / "journal.json"
    (gw,) = start_workers(gateways, mosquitto, publisher, domain, count=1, journal=str(journal), metrics_listen=METRICS)
    first = [new_key() for dummy in range(10)]
    publisher.keys(domain, first)
    wait_until(lambda: journal_keys(journal) == set(first), what=f"first keys journaled\n{gw.log_text()}")
    assert state(gw)["health"]["status"] == "ok"

    small_disk.fill()
    during = [new_key() for dummy in range(50)]  # more than mosquitto's in-flight window of 20
    publisher.keys(domain, during)
    wait_until(lambda: gw.has_all(during), what=f"50 keys applied with the disk full\n{gw.log_text()}")
    seen = wait_until(
        lambda: (
            (s := state(gw))["status"] == 503 and metric(s["metrics"], "wgmesh_worker_journal_unwritten_keys") and s
        ),
        what="health and metrics to report the keys held in memory",
    )
    assert seen["health"]["status"] == "degraded"
    assert "No space left on device" in seen["health"]["error"]["message"]
    assert str(journal) in seen["health"]["error"]["message"]
    assert metric(seen["metrics"], "wgmesh_worker_journal_unwritten_keys") >= 1
    assert journal_keys(journal) == set(first)  # the old journal is intact, not torn

    small_disk.free()  # no new traffic: the worker must notice by itself
    wait_until(lambda: journal_keys(journal) == set(first + during), what=f"the journal to catch up\n{gw.log_text()}")
    recovered = wait_until(lambda: (s := state(gw))["status"] == 200 and s, what="health ok again")
    assert recovered["health"]["status"] == "ok"
    assert metric(recovered["metrics"], "wgmesh_worker_journal_unwritten_keys") == 0

    later = [new_key() for dummy in range(10)]
    publisher.keys(domain, later)
    wait_until(lambda: gw.has_all(later), what="keys after the recovery")
    wait_until(lambda: journal_keys(journal) == set(first + during + later), what="and in the journal")
    assert gw.worker_proc.poll() is None
    assert "No space left on device" in gw.log_text()
