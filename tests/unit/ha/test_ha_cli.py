"""wgmesh-ha's argument checks: bad input stops before anything is touched (exit 2)."""

from __future__ import annotations

import ipaddress

import pytest

from wgmesh.ha.__main__ import main
from wgmesh.ha.route import parse_vips


def test_parse_vips_one_per_family():
    assert parse_vips(["192.0.2.1", "2001:db8::1"]) == (
        ipaddress.ip_address("192.0.2.1"),
        ipaddress.ip_address("2001:db8::1"),
    )
    with pytest.raises(ValueError, match="at most one --vip per address family"):
        parse_vips(["192.0.2.1", "192.0.2.2"])
    with pytest.raises(ValueError, match="'gw1' is not an IPv4 or IPv6 address"):
        parse_vips(["gw1"])


def test_bad_vip_exits_2_naming_it(capsys):
    assert main(["route", "install", "--vip", "192.0.2.300"]) == 2
    assert "--vip '192.0.2.300' is not an IPv4 or IPv6 address" in capsys.readouterr().err


def test_vip_is_required():
    with pytest.raises(SystemExit) as exc:
        main(["promote", "--config", "/nonexistent"])
    assert exc.value.code == 2


def test_unreadable_config_exits_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["promote", "--config", str(tmp_path / "none.yaml"), "--vip", "192.0.2.1"])
    assert exc.value.code == 2
    assert "none.yaml: cannot read" in capsys.readouterr().err
