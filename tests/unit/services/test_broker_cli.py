"""wgmesh-broker's command line: config resolution, --check, exit code 2."""

from __future__ import annotations

import pytest
import yaml

from wgmesh.broker.__main__ import main

GOOD = {"domains": ["ffmuc_welt"], "domain_prefixes": ["ffmuc_"], "unknown_extra": 1}


def test_check_validates_and_reports_warnings(tmp_path, capsys):
    path = tmp_path / "wgkex.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert main(["--config", str(path), "--check"]) == 0
    out, err = capsys.readouterr()
    assert out == f"config {path}: OK\n"
    assert "unknown top-level key(s) unknown_extra" in err


def test_config_from_environment(tmp_path, monkeypatch, capsys):
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "domains": ["nope"]}))
    monkeypatch.setenv("WGKEX_CONFIG_FILE", str(path))
    with pytest.raises(SystemExit) as exc:
        main(["--check"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == (
        f"config {path}: domains[0]: domain 'nope' does not start with any configured prefix (ffmuc_)\n"
    )
