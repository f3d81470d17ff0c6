"""The committer thread: writes the journal, then acknowledges; a disk that refuses the write
never stops the acknowledgements, and the write is retried until it succeeds.

The failure is real: the journal's directory is a regular file, so creating the temp file fails
(ENOTDIR) as it would on a full or read-only disk; removing the file lets the write succeed.
The full-disk case with mosquitto and wireguard-go is tests/integration/services/test_worker_journal_disk.py.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from wgmesh.worker import committer as committer_module
from wgmesh.worker.committer import Committer
from wgmesh.worker.metrics import WorkerMetrics
from wgmesh.worker.session import KeyEvent


def event(mid: int) -> KeyEvent:
    return KeyEvent("d", f"key{mid}", mid, 1, 0.0)


@pytest.fixture
def acks():
    got: list[int] = []
    done = threading.Condition()

    def ack(events):
        with done:
            got.extend(e.mid for e in events)
            done.notify_all()

    def wait_for(n: int) -> list[int]:
        with done:
            assert done.wait_for(lambda: len(got) >= n, timeout=30), got
        return got

    ack.wait_for = wait_for
    return ack


def unwritten(metrics) -> float:
    return metrics.registry.get_sample_value("wgmesh_worker_journal_unwritten_keys")


def test_write_then_acknowledge(tmp_path, acks):
    path = tmp_path / "journal.json"
    metrics = WorkerMetrics()
    c = Committer(str(path), metrics, acks)
    c.start()
    c.submit(b'{"version":1,"domains":{}}', [event(1), event(2)])
    assert acks.wait_for(2) == [1, 2]
    c.stop()
    assert json.loads(path.read_text()) == {"version": 1, "domains": {}}
    assert c.problem is None and unwritten(metrics) == 0


def test_a_refused_write_still_acknowledges_and_is_retried_until_it_succeeds(tmp_path, acks, monkeypatch):
    monkeypatch.setattr(committer_module, "RETRY_S", 0.05)
    blocker = tmp_path / "state"
    blocker.write_text("a file where the journal's directory should be")
    path = blocker / "journal.json"
    metrics = WorkerMetrics()
    c = Committer(str(path), metrics, acks)
    c.start()
    c.submit(b"old", [event(1)])
    c.submit(b"new", [event(2), event(3)])
    assert acks.wait_for(3) == [1, 2, 3]  # acknowledged although nothing is on disk
    assert "cannot write" in c.problem and str(path) in c.problem and "3 keys held in memory" in c.problem
    assert unwritten(metrics) == 3
    blocker.unlink()  # the disk recovers; no new key arrives: the committer retries by itself
    for dummy in range(600):  # bounds a hang only
        if c.problem is None:
            break
        time.sleep(0.05)
    assert c.problem is None and unwritten(metrics) == 0
    assert path.read_bytes() == b"new"  # the newest content, not the first refused one
    c.stop()
