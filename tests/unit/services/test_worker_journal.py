"""The worker's journal: survives restarts, is replaced atomically, never left torn."""

from __future__ import annotations

import base64
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


# --- damaged journals: read what is valid, set aside and report the rest, never crash ---------


def _write(path, domains) -> str:
    text = json.dumps({"version": 1, "domains": domains}, separators=(",", ":"))
    path.write_text(text)
    return text


def _aside(tmp_path) -> list:
    return [p for p in tmp_path.iterdir() if p.name.startswith("j.json.bad-")]


@pytest.mark.parametrize(
    ("bad_key", "bad_value"),
    [
        (KEY_B, None),  # was: TypeError: float() argument must be ... 'NoneType'
        (KEY_B, "123.0"),  # a string timestamp
        (KEY_B, [1.0]),
        (KEY_B, True),
        ("not-a-key", 1.0),
        (KEY_B + "\n", 1.0),
    ],
)
def test_a_wrong_entry_is_set_aside_and_the_rest_is_read(tmp_path, caplog, bad_key, bad_value):
    path = tmp_path / "j.json"
    original = _write(path, {"ffmuc_welt": {KEY_A: 5.0, bad_key: bad_value}})
    j = Journal(str(path))
    assert j.domains == {"ffmuc_welt": {KEY_A: 5.0}}
    assert j.entries_set_aside == 1
    assert "ffmuc_welt" in caplog.text and repr(bad_key) in caplog.text
    (aside,) = _aside(tmp_path)
    assert aside.read_text() == original  # kept whole for a human
    j.save()  # the readable part is written back at once
    assert Journal(str(path)).keys("ffmuc_welt") == {KEY_A: 5.0}


def test_a_domain_that_is_not_a_mapping_is_reported(tmp_path, caplog):
    path = tmp_path / "j.json"
    _write(path, {"ffmuc_welt": {KEY_A: 5.0}, "ffmuc_uml": [KEY_B]})
    j = Journal(str(path))
    assert j.domains == {"ffmuc_welt": {KEY_A: 5.0}}
    assert j.entries_set_aside == 1
    assert "ffmuc_uml" in caplog.text and "not a mapping" in caplog.text
    assert len(_aside(tmp_path)) == 1


def test_a_journal_cut_short_keeps_its_readable_entries(tmp_path, caplog):
    path = tmp_path / "j.json"
    keys = [base64.b64encode(os.urandom(32)).decode() for dummy in range(200)]
    text = _write(path, {"ffmuc_welt": {k: 1000.0 + i for i, k in enumerate(keys)}})
    path.write_text(text[:-1])  # one byte short: the outer "}" is missing
    j = Journal(str(path))
    assert j.keys("ffmuc_welt") == {k: 1000.0 + i for i, k in enumerate(keys)}
    assert "200 readable entries" in caplog.text
    assert j.entries_set_aside == 1  # the damage is counted although nothing was lost
    assert len(_aside(tmp_path)) == 1


def test_a_journal_cut_inside_an_entry_keeps_the_entries_before_it(tmp_path):
    path = tmp_path / "j.json"
    text = _write(path, {"ffmuc_welt": {KEY_A: 1.0, KEY_B: 1234567890.5}})
    path.write_text(text[: text.index("1234567")])  # the number is cut: never half-read
    j = Journal(str(path))
    assert j.keys("ffmuc_welt") == {KEY_A: 1.0}
    path.write_text(text[: text.index("1234567") + 3])  # "123" would be a wrong timestamp
    assert Journal(str(path)).keys("ffmuc_welt") == {KEY_A: 1.0}


def test_an_intact_journal_sets_nothing_aside(tmp_path):
    path = tmp_path / "j.json"
    _write(path, {"ffmuc_welt": {KEY_A: 1.0, KEY_B: 2}})
    j = Journal(str(path))
    assert j.keys("ffmuc_welt") == {KEY_A: 1.0, KEY_B: 2.0}
    assert j.entries_set_aside == 0 and not _aside(tmp_path)


def test_a_low_order_key_in_the_journal_is_set_aside(tmp_path):
    path = tmp_path / "j.json"
    _write(path, {"ffmuc_welt": {KEY_A: 1.0, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=": 2.0}})
    j = Journal(str(path))
    assert j.keys("ffmuc_welt") == {KEY_A: 1.0}
    assert j.entries_set_aside == 1
