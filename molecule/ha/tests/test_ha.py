"""The pair after side_effect.yml crashed its active member (molecule.yml says what runs where).

The crashed member is frozen with its link cut: it is read from the host (/proc/<pid>/root),
the survivor and the nodes' host with testinfra's podman backend.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from functools import partial
from pathlib import Path

import pytest
import testinfra

# The repository root: tests.support is shared by the tests, bench/ and Molecule.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.support.molecule import INVENTORY, podman_host
from tests.support.procs import wait_until
from wgmesh.config import WorkerConfig
from wgmesh.ha.route import DEFAULT_FWMARK, DEFAULT_TABLE

VIPS = {"inet": "10.89.52.100/24", "inet6": "fd00:5180::100/64"}
# wgmesh-ha's defaults, which the keepalived role uses; `ip rule` prints the mark in hex.
TABLE = DEFAULT_TABLE
FWMARK = f"{DEFAULT_FWMARK:#x}"
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
CRASHED = (EPHEMERAL / "crashed-member").read_text().strip()
CRASH_TIME = float((EPHEMERAL / "crash-time").read_text())
SURVIVOR = next(m for m in INVENTORY.get_hosts("gateways") if m != CRASHED)
NODES_HOST = INVENTORY.get_hosts("broker")[0]
NODES_TOOL = "/opt/wgmesh/venv/bin/python /usr/local/lib/ha_nodes.py"
JOURNAL = "/var/lib/wgmesh-worker/journal.json"
STATUS_LOG = "/var/log/wgmesh-nodes/status.log"
NODES_STATE = "/var/lib/wgmesh-nodes/nodes.json"
ADMIN = "XDG_CONFIG_HOME=/etc/mosquitto/wgmesh-admin"  # the mqtt role's own user, its options file
# mosquitto's view of the crashed member: silent for 1.5 x the worker's MQTT keepalive (5 s),
# then its will after the delay (5 s). A wait for that event, not a limit on it.
LATE_WILL_PATIENCE_S = 120


@pytest.fixture(scope="module")
def survivor():
    return podman_host(SURVIVOR)


@pytest.fixture(scope="module")
def nodes_host():
    return podman_host(NODES_HOST)


@pytest.fixture(scope="module")
def node_keys(nodes_host):
    return [node["public_key"] for node in json.loads(nodes_host.file(NODES_STATE).content_string)]


def test_the_partner_holds_both_families(survivor):
    for family, vip in VIPS.items():
        flag = "-6" if family == "inet6" else "-4"
        addresses = survivor.check_output(f"ip {flag} -o addr show dev eth0")
        assert f"{family} {vip} " in addresses, addresses


def test_wgmesh_ha_says_active_for_the_worker(survivor):
    state = survivor.file("/run/wgmesh/ha-state")
    assert state.content_string == "active\n"
    assert state.mode == 0o644  # the worker runs as its own user with the kernel backend


def test_wireguard_packets_leave_from_the_virtual_address(survivor):
    assert f"fwmark {FWMARK} lookup {TABLE}" in survivor.check_output("ip -4 rule")
    routes = survivor.check_output(f"ip -4 route show table {TABLE}")
    assert f"src {VIPS['inet'].split('/', maxsplit=1)[0]}" in routes, routes


def test_keepalived_runs_the_checked_config(survivor):
    assert survivor.service("keepalived").is_running
    assert survivor.service("keepalived").is_enabled
    assert survivor.run("keepalived --config-test --use-file /etc/keepalived/keepalived.conf").rc == 0
    # one wgmesh-ha, started by keepalived as its notify_fifo_script (the pattern does not
    # match the shell that runs pgrep)
    assert survivor.check_output("pgrep -c -f 'bin/python[0-9.]* /opt/wgmesh/venv/bin/wgmesh-ha fifo'") == "1"


def test_the_promotion_is_in_the_survivors_journal(survivor):
    # keepalived sends its fifo script's output to /dev/null; the role starts it through
    # systemd-cat, so what the promotion did (or why it failed) is in the journal.
    lines = survivor.check_output(f"journalctl --identifier=wgmesh-ha --since=@{int(CRASH_TIME)} --output=cat")
    promoted = [line for line in lines.splitlines() if re.search(r"domain \S+: wg-welt: ", line)]
    assert promoted, lines
    assert "peers asked to handshake" in promoted[-1], promoted


def test_the_survivor_was_synced_with_its_partner(survivor):
    # the worker's marker, which keepalived's weighted track script reads: the standby held
    # its partner's full set before it took over
    assert survivor.file(WorkerConfig.ha_synced_file).exists


def test_every_node_is_back_after_the_takeover(nodes_host):
    # First the outages as the nodes saw them (before this test's pings, which would start a
    # handshake themselves): each node's first handshake after the crash.
    outages = json.loads(nodes_host.check_output(f"{NODES_TOOL} outages {CRASH_TIME}"))
    stopped = [name for name, node in outages.items() if node["data"] and not node["pinging"]]
    assert not stopped, f"the data nodes {stopped} stopped pinging"
    print(f"\nOutage per node after the crash of {CRASHED} (s; no limit asserted):")
    for name, node in outages.items():
        print(f"  {name} {'ping' if node['data'] else 'keepalive-only':14} {node['outage']}")
    for kind, data in (("ping", True), ("keepalive-only", False)):
        values = sorted(n["outage"] for n in outages.values() if n["data"] is data and n["outage"] is not None)
        if values:
            print(f"  {kind}: min {values[0]} median {values[len(values) // 2]} max {values[-1]} ({len(values)} nodes)")
    not_back = [name for name, node in outages.items() if node["outage"] is None]
    # Back through the promotion's trigger: a keepalive-only node never starts a handshake
    # itself, a data node only after 15 s.
    assert not not_back, f"no traffic since the crash on {not_back}"
    pings = json.loads(nodes_host.check_output(f"{NODES_TOOL} ping"))
    assert all(pings.values()), f"no ping through the tunnel of {[n for n, ok in pings.items() if not ok]}"


def test_traffic_flowed_through_the_rolling_maintenance():
    # side_effect.yml ran playbooks/rolling-maintenance.yml while the data nodes pinged: the
    # standby's worker restarted, then the active member handed over to it (a clean stop) and
    # restarted its own. Each data node's longest silence in that window, as measured.
    start = float((EPHEMERAL / "maintenance-start").read_text())
    end = float((EPHEMERAL / "maintenance-end").read_text())
    gaps = json.loads((EPHEMERAL / "maintenance-gaps.json").read_text())
    print("\nLongest silence per data node during the rolling maintenance (s; no limit asserted):")
    for name, node in gaps.items():
        print(f"  {name} {node['longest']}")
    assert gaps, "no data node was measured"
    stopped = [name for name, node in gaps.items() if not node["pinging"]]
    assert not stopped, f"the data nodes {stopped} stopped pinging"
    # A node cut off for the whole window would show the window itself as its silence.
    window = end - start
    print(f"  (the maintenance took {window:.0f} s)")
    cut_off = [name for name, node in gaps.items() if node["longest"] >= window]
    assert not cut_off, f"no ping reply at all during the maintenance on {cut_off}"


def test_no_peer_was_lost_on_either_member(survivor, node_keys):
    peers = survivor.check_output("wg show wg-welt peers").split()
    assert set(node_keys) <= set(peers), set(node_keys) - set(peers)
    local = testinfra.get_host("local://")
    pid = local.check_output(f"podman inspect --format '{{{{.State.Pid}}}}' {shlex.quote(CRASHED)}")
    journal = local.file(f"/proc/{pid}/root{JOURNAL}").content_string
    missing = [key for key in node_keys if key not in journal]
    assert not missing, f"{CRASHED}'s journal lacks {missing}"


def _statuses(nodes_host) -> list[tuple[float, str]]:
    lines = nodes_host.file(STATUS_LOG).content_string.splitlines()
    return [(float(when), payload) for when, payload in (line.split() for line in lines if line.strip())]


def _late_will_answered(nodes_host):
    after = [(when, payload) for when, payload in _statuses(nodes_host) if when > CRASH_TIME]
    payloads = [payload for dummy, payload in after]
    if "0" in payloads and payloads[-1] == "1":
        return after
    return None


def test_the_pair_stays_online_through_the_crashed_members_late_will(nodes_host):
    after = wait_until(
        partial(_late_will_answered, nodes_host), LATE_WILL_PATIENCE_S, 1, "the late will and its answer"
    )
    will = next(when for when, payload in after if payload == "0")
    answer = next(when for when, payload in after if when >= will and payload == "1")
    print(f"\nlate will '0' {will - CRASH_TIME:.1f} s after the crash, answered with '1' {answer - will:.3f} s later")
    retained = nodes_host.check_output(f"{ADMIN} mosquitto_sub -h localhost -C 1 -W 10 -t wireguard-worker/gw1/status")
    assert retained == "1"
