"""The keepalived role's config: what docs/ha.md says the pair needs, accepted by keepalived -t.

Rendered with ansible-core's Templar from the role's defaults and vars and an inventory with
a pair, as a play would; then checked by the real `keepalived -t` where it is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from tests.support.templates import trusted
from wgmesh.config import WorkerConfig
from wgmesh.ha import state

ROLE = Path(__file__).resolve().parents[3] / "roles" / "keepalived"
# The role's filters are the collection's (freifunk.wgmesh.wg_ha_pair, wg_ifname), as in a play:
# tests/unit/conftest.py installs Ansible's collection finder for them.
MEMBER = {
    "wgmesh_gateway_identity": "gw1",
    "wgmesh_ha_vips": ["192.0.2.10/24", "2001:db8::10/64"],
    "wgmesh_ha_virtual_router_id": 51,
    "wgmesh_gateway_external_name": "gw1.example.net",
}
IPV4_ONLY = {"wgmesh_ha_vips": ["192.0.2.10/24"]}
HOSTVARS = {"gw1a": {**MEMBER, "wgmesh_ha_priority": 150}, "gw1b": {**MEMBER, "wgmesh_ha_priority": 100}, "gw2": {}}


def templar(host="gw1b", **extra) -> Templar:
    variables = {
        # the role's dependency's defaults (where the daemons are installed), then its own
        **yaml.safe_load((ROLE.parent / "wgmesh_daemon" / "defaults" / "main.yml").read_text()),
        **yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()),
        **yaml.safe_load((ROLE / "vars" / "main.yml").read_text()),
        "inventory_hostname": host,
        "groups": {"gateways": list(HOSTVARS)},
        "hostvars": HOSTVARS,
        **HOSTVARS[host],
        "wgmesh_domains": [{"name": "ffmuc_welt", "prefix": "ffmuc_"}, {"name": "ffmuc_uml", "prefix": "ffmuc_"}],
        "ansible_facts": {"default_ipv4": {"interface": "eth0"}},
        "ansible_managed": "managed",
        **extra,
    }
    return Templar(loader=DataLoader(), variables=trusted(variables))


def render(host="gw1b", **extra) -> str:
    template = (ROLE / "templates" / "keepalived.conf.j2").read_text()
    return templar(host, **extra).template(trusted(template))


def block(conf: str, head: str) -> str:
    match = re.search(r"^" + re.escape(head) + r" \{\n(.*?)^\}", conf, re.S | re.M)
    assert match, f"no block {head!r} in\n{conf}"
    return match.group(1)


def sync_group_members(conf: str) -> list[str]:
    return re.search(r"group \{([^}]*)\}", block(conf, "vrrp_sync_group gw1")).group(1).split()


def test_both_families_are_one_sync_group_named_after_the_pair():
    conf = render()
    assert sync_group_members(conf) == ["gw1_v4", "gw1_v6"]
    v4, v6 = block(conf, "vrrp_instance gw1_v4"), block(conf, "vrrp_instance gw1_v6")
    assert "192.0.2.10/24 dev eth0" in v4 and "2001:db8" not in v4
    assert "2001:db8::10/64 dev eth0" in v6 and "192.0.2" not in v6
    for instance in (v4, v6):
        lines = [line.strip() for line in instance.splitlines()]
        assert {"state BACKUP", "nopreempt", "virtual_router_id 51", "priority 100", "advert_int 0.1"} <= set(lines)


def test_the_fifo_runs_wgmesh_ha_for_the_sync_group_with_both_vips():
    global_defs = block(render(), "global_defs")
    assert "vrrp_version 3" in global_defs
    assert "vrrp_rt_priority 50" in global_defs
    assert "notify_fifo /run/wgmesh/keepalived.fifo" in global_defs
    command = re.search(r'notify_fifo_script "([^"]*)"', global_defs).group(1).split()
    # keepalived sends its scripts' output to /dev/null: systemd-cat puts the promotion's lines
    # and errors into the journal (seen in the lab: no wgmesh-ha line anywhere), then execs it.
    assert command[:2] == ["/usr/bin/systemd-cat", "--identifier=wgmesh-ha"]
    command = command[2:]
    assert command[:2] == ["/opt/wgmesh/venv/bin/wgmesh-ha", "fifo"]
    assert command[command.index("--instance") + 1] == "gw1"
    assert [command[i + 1] for i, arg in enumerate(command) if arg == "--vip"] == ["192.0.2.10", "2001:db8::10"]
    # The file the worker role names as worker.ha_state_file for an HA member.
    assert command[command.index("--state-file") + 1] == state.DEFAULT_PATH


def test_track_scripts_on_the_wireguard_links_the_worker_and_the_clock():
    conf = render()
    assert "check-links wg-welt wg-uml" in block(conf, "vrrp_script wgmesh_wireguard")
    worker = block(conf, "vrrp_script wgmesh_worker")
    # A plain restart of the worker (an upgrade, a handler) is shorter than the grace.
    assert "fall 15" in worker and "interval 1" in worker
    track = re.search(r"track_script \{([^}]*)\}", block(conf, "vrrp_instance gw1_v4")).group(1)
    assert track.split() == ["wgmesh_wireguard", "wgmesh_worker", "wgmesh_ha_synced", "wgmesh_time_sync"]
    assert "wgmesh_time_sync" not in render(keepalived_require_time_sync=False)


def test_the_synced_marker_is_a_weight_so_a_fresh_pair_still_elects_a_master():
    conf = render()
    synced = [line.strip() for line in block(conf, "vrrp_script wgmesh_ha_synced").splitlines()]
    # the worker's marker (worker.ha_synced_file) and wgmesh-ha's state file, as the roles name them
    check = f"/usr/local/lib/wgmesh-keepalived/check-ha-synced {WorkerConfig.ha_synced_file} {state.DEFAULT_PATH}"
    assert f'script "{check}"' in synced
    # a weight, not a fault: a member without its partner's set is only less preferred
    assert "weight 50" in synced
    # keepalived turns a weight in a sync group into 0 (a hard fault) unless the group allows it
    assert "sync_group_tracking_weight" in block(conf, "vrrp_sync_group gw1").split()
    conf = render(keepalived_ha_synced_weight=0)
    assert "wgmesh_ha_synced" not in conf and "sync_group_tracking_weight" not in conf


@pytest.mark.parametrize(
    ("marker", "ha_state", "rc"),
    [(False, "standby", 1), (False, None, 1), (True, "standby", 0), (False, "active", 0), (True, None, 0)],
    ids=["standby-unsynced", "fresh", "standby-synced", "active", "synced-no-state"],
)
def test_check_ha_synced_counts_the_active_member_as_synced(tmp_path, marker, ha_state, rc):
    # The active member follows nobody and never writes the marker: it holds the reference set.
    if marker:
        (tmp_path / "ha-synced").write_text("1700000000\n")
    if ha_state:
        (tmp_path / "ha-state").write_text(ha_state + "\n")
    script = ROLE / "files" / "check-ha-synced"
    result = subprocess.run([script, tmp_path / "ha-synced", tmp_path / "ha-state"], check=False)
    assert result.returncode == rc


def test_preempt_delay_and_unicast_peers_per_family():
    conf = render(
        keepalived_preempt=True, keepalived_preempt_delay=30, keepalived_unicast_peers=["198.51.100.2", "2001:db8::2"]
    )
    v4, v6 = block(conf, "vrrp_instance gw1_v4"), block(conf, "vrrp_instance gw1_v6")
    assert "preempt_delay 30" in v4 and "nopreempt" not in v4
    assert "198.51.100.2" in v4 and "2001:db8::2" not in v4
    assert "2001:db8::2" in v6 and "198.51.100.2" not in v6


def test_an_ipv4_only_pair_has_one_instance_named_after_the_pair():
    """No sync group of one (keepalived -t refuses it); wgmesh-ha follows the instance by the pair's name."""
    hostvars = {h: {**v, **IPV4_ONLY} if v else v for h, v in HOSTVARS.items()}
    conf = render(hostvars=hostvars, **IPV4_ONLY)
    assert re.findall(r"^vrrp_instance (\S+) \{", conf, re.M) == ["gw1"]
    assert "vrrp_sync_group" not in conf
    assert '--instance gw1"' in conf


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived is not installed")
@pytest.mark.parametrize("pair", [{}, IPV4_ONLY], ids=["both families", "IPv4 only"])
def test_keepalived_accepts_the_config(tmp_path, pair):
    """keepalived -t fails a sync group of one instance ("this probably isn't what you want"):
    found by the lab's IPv4-only pair."""
    hostvars = {h: {**v, **pair} if v else v for h, v in HOSTVARS.items()}
    conf = tmp_path / "keepalived.conf"
    # The role's track scripts from its files/ (keepalived -t refuses a script it cannot run).
    conf.write_text(render(_keepalived_tools_dir=str(ROLE / "files"), hostvars=hostvars, **pair))
    result = subprocess.run(
        ["keepalived", "--config-test", "--use-file", str(conf)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stopping_keepalived_demotes_this_member():
    # keepalived's own STOP notice does not reach wgmesh-ha on a clean stop (its notify_fifo_script
    # stops with it; seen in molecule/ha's rolling maintenance: the stopped member kept saying
    # "active"), so the unit demotes after every stop, clean or not, with the fifo's arguments.
    dropin = templar().template(trusted((ROLE / "templates" / "keepalived-wgmesh.conf.j2").read_text()))
    stop_post = [line.split("=", 1)[1] for line in dropin.splitlines() if line.startswith("ExecStopPost=")]
    assert len(stop_post) == 1, dropin
    demote = stop_post[0].split()
    fifo = re.search(r'notify_fifo_script "([^"]*)"', block(render(), "global_defs")).group(1).split()
    assert demote[:2] == ["/opt/wgmesh/venv/bin/wgmesh-ha", "demote"]
    # the same config, addresses and state file as the fifo; demote takes no --instance
    fifo_args = fifo[fifo.index("fifo") + 1 : fifo.index("--instance")]
    assert demote[2:] == fifo_args


def test_the_realtime_vrrp_process_gets_a_cpu_time_limit_it_can_live_with():
    """keepalived kills its realtime VRRP process after RLIMIT_RTTIME of CPU without blocking,
    10 ms by default: on the lab's emulated gateways it was SIGKILLed at every start, in a loop,
    while the unit stayed active."""
    global_defs = block(render(), "global_defs")
    assert "vrrp_rt_priority 50" in global_defs
    limit = re.search(r"^\s*vrrp_rlimit_rttime (\d+)$", global_defs, re.M)
    assert limit, global_defs
    assert int(limit.group(1)) == 1_000_000
    assert f"vrrp_rlimit_rttime {5_000_000}" in block(render(keepalived_vrrp_rlimit_rttime=5_000_000), "global_defs")


def test_keepalived_starts_after_the_worker_so_no_synced_marker_of_a_previous_boot_counts():
    # The synced marker lives on disk (the worker's state directory); the worker removes it when
    # it starts and writes it again once it holds its partner's set. keepalived's check reads it:
    # started first at boot, it would take the last boot's marker for a synced member.
    dropin = templar().template(trusted((ROLE / "templates" / "keepalived-wgmesh.conf.j2").read_text()))
    after = [line.split("=", 1)[1].split() for line in dropin.splitlines() if line.startswith("After=")]
    assert ["wgmesh-worker.service"] in after, dropin
    # ordering only: keepalived must not pull in or stop with the worker
    assert not re.search(r"^(Requires|Wants|BindsTo|PartOf)=", dropin, re.M), dropin
