"""The worker's view of its HA role: a change of the state file is reported once, as it happens."""

from __future__ import annotations

from wgmesh.ha import state
from wgmesh.worker.harole import HaRole


def test_a_promotion_and_a_demotion_are_reported_once_each(tmp_path):
    path = str(tmp_path / "ha-state")
    seen: list[bool] = []
    role = HaRole(path, seen.append)
    assert not role.active  # missing file: standby
    state.write(path, state.ACTIVE)
    role.check()
    role.check()  # unchanged file: nothing new
    assert role.active and seen == [True]
    state.write(path, state.ACTIVE)  # rewritten with the same role: no change to report
    role.check()
    assert seen == [True]
    state.write(path, state.STANDBY)
    role.check()
    assert not role.active and seen == [True, False]


def test_an_unreadable_or_vanished_file_counts_as_standby(tmp_path):
    path = tmp_path / "ha-state"
    state.write(str(path), state.ACTIVE)
    seen: list[bool] = []
    role = HaRole(str(path), seen.append)
    assert role.active
    path.unlink()
    role.check()
    assert not role.active and seen == [False]
