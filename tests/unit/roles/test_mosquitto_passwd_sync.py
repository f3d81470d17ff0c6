"""The mqtt role's password-file tool: mosquitto's hash format, and no rehash of unchanged passwords."""

from __future__ import annotations

import grp
import importlib.util
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[3] / "roles" / "mqtt" / "files" / "mosquitto_passwd_sync.py"
spec = importlib.util.spec_from_file_location("mosquitto_passwd_sync", TOOL)
sync = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sync)

GROUP = grp.getgrgid(os.getgid()).gr_name


def run(path: Path, accounts, *flags, monkeypatch, capsys) -> dict:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(accounts)))
    if os.geteuid() != 0:
        pytest.skip("writes a root-owned file (run as root, as Ansible does)")
    sync.main([str(path), "--group", GROUP, *flags])
    return json.loads(capsys.readouterr().out)


@pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed (Debian package mosquitto)"
)
def test_verifies_what_mosquitto_passwd_wrote(tmp_path):
    path = tmp_path / "passwd"
    path.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(path), "alice", "s3cret"], check=True)
    entry = sync.read_entries(path)["alice"]
    assert sync.verifies(entry, "s3cret")
    assert not sync.verifies(entry, "s3cret ")


def test_own_hash_has_mosquittos_format_and_verifies():
    entry = sync.hash_password("pw")
    assert entry.startswith("$7$101$")
    assert sync.verifies(entry, "pw")
    assert not sync.verifies(entry, "PW")


def test_create_keep_change_remove(tmp_path, monkeypatch, capsys):
    path = tmp_path / "passwd"
    accounts = [{"name": "broker", "password": "a"}, {"name": "gw1", "password": "b"}]
    report = run(path, accounts, "--check", monkeypatch=monkeypatch, capsys=capsys)
    assert report["changed"] and report["added"] == ["broker", "gw1"]
    assert not path.exists()

    report = run(path, accounts, monkeypatch=monkeypatch, capsys=capsys)
    assert report["changed"]
    assert (path.stat().st_mode & 0o777, path.stat().st_uid) == (0o640, 0)
    first = path.read_text()

    report = run(path, accounts, monkeypatch=monkeypatch, capsys=capsys)
    assert not report["changed"]
    assert path.read_text() == first

    report = run(
        path,
        [{"name": "broker", "password": "a"}, {"name": "gw2", "password": "c"}],
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert (report["added"], report["updated"], report["removed"]) == (["gw2"], [], ["gw1"])
    entries = sync.read_entries(path)
    # broker's password did not change: its hash (and salt) stays as it was.
    assert f"broker:{entries['broker']}\n" in first
    assert set(entries) == {"broker", "gw2"}

    report = run(
        path,
        [{"name": "broker", "password": "new"}, {"name": "gw2", "password": "c"}],
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert report["updated"] == ["broker"]
    assert sync.verifies(sync.read_entries(path)["broker"], "new")
    assert "new" not in json.dumps(report)


def test_wrong_mode_is_repaired(tmp_path, monkeypatch, capsys):
    path = tmp_path / "passwd"
    run(path, [{"name": "u", "password": "p"}], monkeypatch=monkeypatch, capsys=capsys)
    path.chmod(0o644)
    report = run(path, [{"name": "u", "password": "p"}], monkeypatch=monkeypatch, capsys=capsys)
    assert report["changed"] and report["attributes"]
    assert path.stat().st_mode & 0o777 == 0o640
