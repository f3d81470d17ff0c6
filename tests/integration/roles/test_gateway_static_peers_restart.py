"""wgmesh-wg@ (wireguard-go) brings the gateway's static peers back when it makes the device anew.

A restart of the unit (a wireguard-go upgrade) or a reboot makes an empty device; the unit loads
the role's static peers file, so the gateway-to-gateway links come back without site.yml.

Real wireguard-go and wg in a network namespace of this test's own. The role's templates are
rendered (unit, env file, static peers file) and the unit's commands run as systemd would run them
(tests/support/unit_commands.py), as there is no systemd here. One difference, said here: the
ExecStart daemon runs with WG_PROCESS_FOREGROUND=1 so that this test owns its PID (systemd's
Type=forking waits for the same fork), and "started" is its control socket appearing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import time
from pathlib import Path

import pytest
import yaml

from tests.support.keys import new_key
from tests.support.procs import out, run, terminate, wait_until
from tests.support.templates import role_environment
from tests.support.unit_commands import UnitCommands
from wgmesh import derive

ROLE = Path(__file__).resolve().parents[3] / "roles" / "gateway"
SOCKETS = Path("/var/run/wireguard")


def peers_template() -> str:
    tasks = yaml.safe_load((ROLE / "tasks" / "configure.yml").read_text())
    task = next(t for t in tasks if t["name"] == "Write each domain's static peers for its WireGuard unit")
    return task["ansible.builtin.template"]["src"]


@pytest.fixture
def device(tmp_path):
    """A namespace and interface name of this test's own, removed afterwards (by name and PID)."""
    for tool in ("ip", "wg", "wireguard-go"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian: iproute2, wireguard-tools, wireguard-go)")
    if os.geteuid() != 0:
        pytest.skip("network namespaces and TUN devices need root")
    suffix = f"{os.getpid() % 10000}{secrets.token_hex(2)}"
    state = {"netns": f"h7-{suffix}", "wg": f"wgs{suffix}", "daemon": None}
    # `ip netns exec` bind-mounts /etc/netns/<netns>/hosts over /etc/hosts: a resolver of our own.
    etc = Path("/etc/netns") / state["netns"]
    etc.mkdir(parents=True)
    state["hosts"] = etc / "hosts"
    state["hosts"].write_text("127.0.0.1 localhost\n")
    run("ip", "netns", "add", state["netns"])
    try:
        yield state
    finally:
        if state["daemon"] is not None:
            terminate(state["daemon"], timeout=5)
        # A `wg` still retrying a name in the background: only processes of this namespace.
        for pid in out("ip", "netns", "pids", state["netns"], check=False).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        run("ip", "netns", "del", state["netns"], check=False)
        (SOCKETS / f"{state['wg']}.sock").unlink(missing_ok=True)
        shutil.rmtree(etc)


def render_role_files(conf_dir: Path, wg: str, static_peers: list[dict]) -> UnitCommands:
    """What the role writes for one domain: key, env file, static peers file, unit."""
    key = conf_dir / f"{wg}.key"
    key.touch(mode=0o600)
    key.write_text(out("wg", "genkey"))
    public_key = out("wg", "pubkey", input=key.read_text()).strip()
    item = {
        "ifs": {"wg": wg},
        "key_path": str(key),
        "port": 40000 + secrets.randbelow(20000),
        "lladdr": str(derive.lladdr_from_key(public_key)),
        "peers_path": str(conf_dir / f"{wg}.peers.conf"),
        "static_peers": static_peers,
    }
    env = role_environment(ROLE)
    for template, path in (("wg.env.j2", conf_dir / f"{wg}.env"), (peers_template(), Path(item["peers_path"]))):
        path.write_text(env.get_template(template).render(ansible_managed="test", item=item))
    unit = env.get_template("wgmesh-wg@.service.j2").render(
        ansible_managed="test", _gateway_conf_dir=str(conf_dir), gateway_wireguard_userspace=True
    )
    return UnitCommands(unit, wg)


def start(unit: UnitCommands, device: dict, log: Path) -> None:
    (line,) = unit.lines["ExecStart"]
    device["daemon"], dummy = unit.start(line, device["netns"], log, WG_PROCESS_FOREGROUND="1")
    wait_until((SOCKETS / f"{device['wg']}.sock").exists, 10, what=f"{device['wg']} socket")
    unit.execute("ExecStartPost", device["netns"], log)


def stop(device: dict) -> None:
    """What `systemctl stop` does to wireguard-go: SIGTERM; the device and its socket go with it."""
    terminate(device["daemon"], timeout=5)
    device["daemon"] = None

    def gone() -> bool:
        return run("ip", "-n", device["netns"], "link", "show", device["wg"], check=False).returncode != 0

    wait_until(gone, 10, what=f"{device['wg']} gone")


def peers(device: dict) -> dict[str, tuple[str, str]]:
    """public key -> (endpoint, allowed IPs) from `wg show dump`."""
    dump = out("ip", "netns", "exec", device["netns"], "wg", "show", device["wg"], "dump").splitlines()[1:]
    return {f[0]: (f[2], f[3]) for f in (line.split("\t") for line in dump)}


def test_static_peers_come_back_after_a_restart_and_node_peers_stay_through_a_load(device, tmp_path):
    gw2, gw3, node = new_key(), new_key(), new_key()
    gw2_ll, gw3_ll, node_ll = (str(derive.lladdr_from_key(k)) for k in (gw2, gw3, node))
    static = [
        # A name, as gateway_endpoints publishes them: it resolves through /etc/hosts here.
        {"public_key": gw2, "endpoint": "localhost:40012", "allowed_ips": [f"{gw2_ll}/128"]},
        # An HA member declares the other gateways with no endpoint.
        {"public_key": gw3, "endpoint": None, "allowed_ips": [f"{gw3_ll}/128"]},
    ]
    unit = render_role_files(tmp_path, device["wg"], static)
    log = tmp_path / "unit.log"
    want = {gw2: ("127.0.0.1:40012", f"{gw2_ll}/128"), gw3: ("(none)", f"{gw3_ll}/128")}

    start(unit, device, log)
    # The endpoints load in the background (names may not resolve yet at boot): wait for it.
    wait_until(lambda: peers(device) == want, 10, what=f"the static peers\n{peers(device)}\n{log.read_text()}")

    stop(device)
    began = time.monotonic()
    start(unit, device, log)
    wait_until(lambda: peers(device) == want, 10, what=f"the static peers again\n{peers(device)}\n{log.read_text()}")
    print(f"\nstatic peers back {time.monotonic() - began:.2f} s after wireguard-go was started again")

    # A node peer the worker adds, then the unit's loads once more (what a restart of the kernel
    # variant runs on its surviving device): addconf adds, it never removes or widens.
    run(
        "ip", "netns", "exec", device["netns"], "wg", "set", device["wg"], "peer", node, "allowed-ips", f"{node_ll}/128"
    )
    unit.execute("ExecStartPost", device["netns"], log)
    with_node = want | {node: ("(none)", f"{node_ll}/128")}
    what = f"the node peer kept and the static peers unchanged\n{peers(device)}\n{log.read_text()}"
    wait_until(lambda: peers(device) == with_node, 10, what=what)


def test_at_boot_the_keys_load_at_once_and_an_endpoint_once_its_name_resolves(device, tmp_path):
    """A boot before the uplink: the namespace has no route, so the name lookup fails for now
    (EAI_AGAIN) and wg retries in the background while the unit carries on."""
    gw2 = new_key()
    gw2_ll = str(derive.lladdr_from_key(gw2))
    static = [{"public_key": gw2, "endpoint": "gw2.example.net:40012", "allowed_ips": [f"{gw2_ll}/128"]}]
    unit = render_role_files(tmp_path, device["wg"], static)
    log = tmp_path / "unit.log"

    start(unit, device, log)  # returns: no load waits for the name
    assert peers(device) == {gw2: ("(none)", f"{gw2_ll}/128")}, log.read_text()

    with device["hosts"].open("a") as hosts:  # the uplink is up: the name resolves
        hosts.write("127.0.0.2 gw2.example.net\n")
    want = {gw2: ("127.0.0.2:40012", f"{gw2_ll}/128")}
    wait_until(lambda: peers(device) == want, 60, what=f"the endpoint\n{peers(device)}\n{log.read_text()}")
    assert "Temporary failure in name resolution" in log.read_text()
