"""The worker with a journal the disk refuses and later takes again: a full tmpfs (ENOSPC) and a
directory made read-only in the worker's mount namespace (EROFS), both real.

Real mosquitto (its in-flight window of 20 unacknowledged messages per client is what turned
one failed write into a stall) and wireguard-go in a namespace, from tests/support/gateway.py.
"""

from __future__ import annotations

import contextlib
import errno
import json
import sys

import pytest

from tests.support.gateway import start_workers
from tests.support.keys import new_key
from tests.support.procs import run, wait_until

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


class FullDisk:
    """A 256 KiB tmpfs of our own, mounted before the worker starts (so its mount namespace
    has it too); filling it makes every write fail with ENOSPC."""

    error = "No space left on device"

    def __init__(self, tmp_path):
        self.path = tmp_path / "journal-fs"
        self.path.mkdir()
        run("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(self.path))
        self.filler = self.path / "filler"

    def break_(self, gw) -> None:
        with open(self.filler, "ab", buffering=0) as fh, contextlib.suppress(OSError):  # until ENOSPC
            while True:
                fh.write(b"\0" * 4096)
        with pytest.raises(OSError) as err, open(self.path / "probe", "wb", buffering=0) as probe:
            probe.write(b"x" * 8192)
        assert err.value.errno == errno.ENOSPC

    def heal(self, gw) -> None:
        self.filler.unlink()
        (self.path / "probe").unlink(missing_ok=True)

    def close(self) -> None:
        run("umount", "-l", str(self.path), check=False)  # lazily: the worker may still hold it


class ReadOnlyDirectory:
    """The journal's directory bound read-only onto itself in the worker's own mount namespace
    (`ip netns exec` gives it a private one): writes fail with EROFS there, nowhere else."""

    error = "Read-only file system"

    def __init__(self, tmp_path):
        self.path = tmp_path / "journal-dir"
        self.path.mkdir(mode=0o700)

    def _in_worker(self, gw, *args: str) -> None:
        run("nsenter", f"--mount=/proc/{gw.worker_proc.pid}/ns/mnt", *args)

    def break_(self, gw) -> None:
        self._in_worker(gw, "mount", "--bind", str(self.path), str(self.path))
        self._in_worker(gw, "mount", "-o", "remount,bind,ro", str(self.path))

    def heal(self, gw) -> None:
        self._in_worker(gw, "umount", str(self.path))

    def close(self) -> None:
        pass  # the mount lives and ends with the worker's namespace


@pytest.fixture(params=[FullDisk, ReadOnlyDirectory], ids=["disk-full", "read-only"])
def journal_fault(request, tmp_path):
    fault = request.param(tmp_path)
    yield fault
    fault.close()


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


def test_a_refused_journal_write_does_not_stall_the_worker_and_the_journal_catches_up(
    gateways,
    mosquitto,
    publisher,
    domain,
    journal_fault,
):
    journal = journal_fault.path / "journal.json"
    (gw,) = start_workers(gateways, mosquitto, publisher, domain, count=1, journal=str(journal), metrics_listen=METRICS)
    first = [new_key() for dummy in range(10)]
    publisher.keys(domain, first)
    wait_until(lambda: journal_keys(journal) == set(first), what=f"first keys journaled\n{gw.log_text()}")
    assert state(gw)["health"]["status"] == "ok"

    journal_fault.break_(gw)
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
    assert journal_fault.error in seen["health"]["error"]["message"]
    assert str(journal) in seen["health"]["error"]["message"]
    assert metric(seen["metrics"], "wgmesh_worker_journal_unwritten_keys") >= 1
    assert journal_keys(journal) == set(first)  # the old journal is intact, not torn

    journal_fault.heal(gw)  # no new traffic: the worker must notice by itself
    wait_until(lambda: journal_keys(journal) == set(first + during), what=f"the journal to catch up\n{gw.log_text()}")
    recovered = wait_until(lambda: (s := state(gw))["status"] == 200 and s, what="health ok again")
    assert recovered["health"]["status"] == "ok"
    assert metric(recovered["metrics"], "wgmesh_worker_journal_unwritten_keys") == 0

    later = [new_key() for dummy in range(10)]
    publisher.keys(domain, later)
    wait_until(lambda: gw.has_all(later), what="keys after the recovery")
    wait_until(lambda: journal_keys(journal) == set(first + during + later), what="and in the journal")
    assert gw.worker_proc.poll() is None
    assert journal_fault.error in gw.log_text()
