"""The worker's journal: survives restarts, is replaced atomically, never left torn."""

from __future__ import annotations

import json
import os
import stat

import pytest

from wgmesh.worker.journal import Journal, JournalError

KEY_A = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
KEY_B = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="


def test_keys_survive_a_restart(tmp_path):
    path = tmp_path / "state" / "journal.json"  # the directory is created on first save
    j = Journal(str(path))
    j.add("ffmuc_welt", KEY_A, 100.0)
    j.add("ffmuc_uml", KEY_B, 200.0)
    j.save()
    again = Journal(str(path))
    assert again.keys("ffmuc_welt") == {KEY_A: 100.0}
    assert again.keys("ffmuc_uml") == {KEY_B: 200.0}
    assert again.keys("other") == {}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_registering_again_refreshes_added_at_and_remove_drops(tmp_path):
    j = Journal(str(tmp_path / "j.json"))
    j.add("d", KEY_A, 1.0)
    j.add("d", KEY_A, 5.0)
    j.add("d", KEY_B, 2.0)
    j.remove("d", [KEY_B, "unknown"])
    j.save()
    assert Journal(str(tmp_path / "j.json")).keys("d") == {KEY_A: 5.0}


def test_failed_write_leaves_the_old_journal_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "j.json"
    j = Journal(str(path))
    j.add("d", KEY_A, 1.0)
    j.save()
    before = path.read_bytes()
    j.add("d", KEY_B, 2.0)

    def crash(src, dst):  # the moment between writing the temp file and the rename
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(JournalError, match=r"j\.json: cannot write"):
        j.save()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.json"]
    assert j.dirty  # still to be written next time
    monkeypatch.undo()
    j.save()
    assert set(Journal(str(path)).keys("d")) == {KEY_A, KEY_B}


def test_write_goes_through_fsync_before_rename(tmp_path, monkeypatch):
    order = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append("rename"), real_replace(a, b))[1])
    j = Journal(str(tmp_path / "j.json"))
    j.add("d", KEY_A, 1.0)
    j.save()
    assert order == ["fsync", "rename", "fsync"]  # file, rename, then the directory entry


def test_unchanged_journal_is_not_rewritten(tmp_path):
    path = tmp_path / "j.json"
    j = Journal(str(path))
    j.save()
    assert not path.exists()
    j.add("d", KEY_A, 1.0)
    j.save()
    mtime = path.stat().st_mtime_ns
    j.save()
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("content", ["{torn", json.dumps({"version": 99, "domains": {}}), "[]"])
def test_unreadable_journal_is_set_aside_and_the_worker_starts_empty(tmp_path, content, caplog):
    path = tmp_path / "j.json"
    path.write_text(content)
    j = Journal(str(path))
    assert j.domains == {}
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("j.json.bad-")]
    assert len(aside) == 1 and aside[0].read_text() == content
    assert "moved to" in caplog.text
