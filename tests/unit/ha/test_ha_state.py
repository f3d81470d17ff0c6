"""The HA state file: what the worker's stale-peer cleanup reads."""

from __future__ import annotations

import os

from wgmesh.ha import state


def test_active_since_is_the_promotion_time(tmp_path):
    path = str(tmp_path / "run" / "ha-state")
    state.write(path, state.ACTIVE)
    os.utime(path, (1_800_000_000, 1_800_000_000))
    assert state.active_since(path) == 1_800_000_000


def test_standby_missing_or_garbage_count_as_standby(tmp_path):
    path = str(tmp_path / "ha-state")
    assert state.active_since(path) is None  # missing: no peer is dropped while unsure
    state.write(path, state.STANDBY)
    assert state.active_since(path) is None
    (tmp_path / "ha-state").write_text("activ")
    assert state.active_since(path) is None


def test_the_state_file_is_readable_by_the_worker_user(tmp_path):
    # wgmesh-ha runs as root (keepalived's notify_fifo_script); the kernel-backend worker runs
    # as its own user and must read the file, or it counts as standby for ever and never
    # removes a stale peer.
    path = tmp_path / "ha-state"
    state.write(str(path), state.ACTIVE)
    assert path.stat().st_mode & 0o777 == 0o644
