"""`ansible-playbook --check` of the gateway role's run step on a host with a key but no units.

Such a host: the pair's second member after the key was copied to it, or a host with a key from
an earlier setup, whose Debian packages are installed already but not the role's units. Check
mode knows the key, so each domain has its link-local address, yet neither the units
(wgmesh-wg@, wgmesh-uplink-http@) nor the WireGuard devices exist: check mode must say what it
would start and declare, not ask systemd or `wg` about them and fail.

ansible-playbook runs the role's run.yml (tasks_from) on this host (connection local) with
the facts the steps before it leave: `_gateway_install` unchanged (the packages are there),
`_gateway_units` changed (the unit files would be written), and `_gateway_stack` as
configure.yml makes it from an existing key. Not covered: this host runs no systemd as PID 1,
so a systemd task that runs fails here whatever its unit; the test shows that none runs.
gateway_time_sync is `none` for that reason (on a real host its package, installed already,
has its unit).
"""

from __future__ import annotations

from tests.support.playbook import LOCAL, run_playbook
from wgmesh.derive import lladdr_from_key

OWN = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="  # the key file that exists already
OTHER = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="  # another gateway's key
WG, VX = "wg-chk0", "vx-chk0"  # no such devices on this host


def stack() -> list[dict]:
    peer = {"host": "gw2", "public_key": OTHER, "endpoint": "gw2.example.net:40011"}
    peer["lladdr"] = str(lladdr_from_key(OTHER))
    domain = {"name": "ffmuc_chk0", "prefix": "ffmuc_", "port": 40011, "mode": "ffmuc", "ifs": {"wg": WG, "vx": VX}}
    return [{**domain, "public_key": OWN, "lladdr": str(lladdr_from_key(OWN)), "peers": [peer]}]


PLAY = [
    {
        "name": "The gateway role's run step in check mode, on a host with a key but without the units",
        "hosts": "gateways",
        "gather_facts": False,
        "vars": {"gateway_time_sync": "none"},
        "tasks": [
            {
                "name": "Packages installed already",
                "ansible.builtin.debug": {"msg": "apt: nothing to install"},
                "changed_when": False,
                "register": "_gateway_install",
            },
            {
                "name": "The role's units not installed yet",
                "ansible.builtin.debug": {"msg": "template: the unit files would be written"},
                "changed_when": True,
                "register": "_gateway_units",
            },
            {"name": "What configure.yml leaves", "ansible.builtin.set_fact": {"_gateway_stack": stack()}},
            {"ansible.builtin.include_role": {"name": "freifunk.wgmesh.gateway", "tasks_from": "run"}},
        ],
    }
]


def test_check_mode_reports_what_it_would_start_and_declare(tmp_path):
    inventory = {"all": {"children": {"gateways": {"hosts": {"gw1": LOCAL}}}}}
    result = run_playbook(tmp_path, inventory, PLAY, "--check")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "failed=0" in output
    # what it would do, named: the units it would start and the peers it would declare
    assert f"wgmesh-wg@{WG}.service" in output and f"wgmesh-uplink-http@{WG}.service" in output, output
    assert f"{WG}: 1 static peer(s) to declare (gw2; device not there yet)" in output, output
