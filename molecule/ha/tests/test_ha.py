"""The pair after side_effect.yml froze its active member (molecule.yml says what is a stand-in).

Each test runs on both members; the frozen one cannot answer and is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wgmesh.ha.route import DEFAULT_FWMARK, DEFAULT_TABLE

VIPS = {"inet": "10.89.51.100/24", "inet6": "fd00:5180::100/64"}
# wgmesh-ha's defaults, which the keepalived role uses; `ip rule` prints the mark in hex.
TABLE = DEFAULT_TABLE
FWMARK = f"{DEFAULT_FWMARK:#x}"


@pytest.fixture
def member(host):
    crashed = (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "crashed-member").read_text().strip()
    if host.backend.get_hostname() == crashed:
        pytest.skip(f"{crashed} is frozen (the crashed member)")
    return host


def test_the_partner_holds_both_families(member):
    for family, vip in VIPS.items():
        flag = "-6" if family == "inet6" else "-4"
        addresses = member.check_output(f"ip {flag} -o addr show dev eth0")
        assert f"{family} {vip} " in addresses, addresses


def test_wgmesh_ha_says_active_for_the_worker(member):
    state = member.file("/run/wgmesh/ha-state")
    assert state.content_string == "active\n"
    assert state.mode == 0o644  # the worker runs as its own user with the kernel backend


def test_wireguard_packets_leave_from_the_virtual_address(member):
    assert f"fwmark {FWMARK} lookup {TABLE}" in member.check_output("ip -4 rule")
    routes = member.check_output(f"ip -4 route show table {TABLE}")
    assert f"src {VIPS['inet'].split('/', maxsplit=1)[0]}" in routes, routes


def test_keepalived_runs_the_checked_config(member):
    assert member.service("keepalived").is_running
    assert member.service("keepalived").is_enabled
    assert member.run("keepalived --config-test --use-file /etc/keepalived/keepalived.conf").rc == 0
    # one wgmesh-ha, started by keepalived as its notify_fifo_script (the pattern does not
    # match the shell that runs pgrep)
    assert member.check_output("pgrep -c -f 'bin/python[0-9.]* /opt/wgmesh/venv/bin/wgmesh-ha fifo'") == "1"
