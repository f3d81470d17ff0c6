"""The worker's kernel backend on the VM's real kernel (Debian 6.1, wireguard and vxlan modules).

First the kernel-only pytest files of the repository run inside the VM, from the venv converge
installed: on a host without the wireguard module they skip, here every test must run and pass.
Then the worker daemon itself runs against wg-welt/vx-welt (made by converge) with mosquitto
from Debian: a key published on MQTT becomes a kernel WireGuard peer, a route and an FDB entry.
Nothing is mocked.
"""

import base64
import ipaddress
import json
import os
import re
import secrets
import time

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from wgmesh.derive import lladdr_from_key

INVENTORY = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = [
    f"ansible://{name}?ansible_inventory={INVENTORY.inventory_file}" for name in INVENTORY.get_hosts("all")
]

# Every kernel-only test of the repository; a skip here would mean the VM lacks the kernel module.
KERNEL_TESTS = [
    "tests/integration/services/test_worker_kernel*.py",
    "tests/integration/services/test_worker_backends.py::test_kernel_backend_batch_add_dump_and_remove",
]
SETTLE_SECONDS = 180  # bounds a hang on a slow TCG guest; measures nothing


def _vars(host):
    return INVENTORY.get_variables(host.backend.host)


def test_kernel_tests_run_and_pass_inside_the_vm(host):
    root = _vars(host)["wk_root"]
    result = host.run(f"cd {root} && venv/bin/pytest -p no:cacheprovider -v -rA {' '.join(KERNEL_TESTS)}")
    print(result.stdout)
    assert result.rc == 0, f"pytest in the VM failed:\n{result.stdout}\n{result.stderr}"
    summary = result.stdout.strip().splitlines()[-1]
    passed = re.fullmatch(r"=+ (\d+) passed in [\d.]+s(?: \([\d:]+\))? =+", summary)
    assert passed, f"every kernel test must run and pass here, nothing skipped: {summary}"
    assert int(passed.group(1)) >= 8, summary


@pytest.fixture
def worker(host):
    """The worker daemon as a transient systemd unit, kernel backend forced; stopped afterwards."""
    v = _vars(host)
    config = {
        "domains": [v["wk_domain"]],
        "domain_prefixes": v["wk_domain_prefixes"],
        "mqtt": {"broker_url": "127.0.0.1", "broker_port": 1883},
        "worker": {"name": host.backend.host, "backend": "kernel", "journal": "/var/lib/wk-worker/journal.json"},
    }
    path = "/run/wk-worker.yaml"
    host.run(f"install -m 0600 /dev/null {path} && echo '{json.dumps(config)}' > {path}")
    started = host.run(
        f"systemd-run --unit=wk-worker --collect --property=StateDirectory=wk-worker "
        f"{v['wk_root']}/venv/bin/wgmesh-worker --config {path}"
    )
    assert started.rc == 0, started.stderr
    yield v
    host.run("systemctl stop wk-worker")


def test_worker_daemon_turns_a_published_key_into_peer_route_and_fdb_entry(host, worker):
    domain = worker["wk_domain"]
    suffix = domain.removeprefix(worker["wk_domain_prefixes"][0])
    wg, vx = f"wg-{suffix}", f"vx-{suffix}"
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    lladdr = ipaddress.ip_address(lladdr_from_key(key))
    publish = (
        f"{worker['wk_root']}/venv/bin/python -c 'import sys, paho.mqtt.publish as p; "
        f'p.single(sys.argv[1], sys.argv[2], qos=1, hostname="127.0.0.1")\' '
        f"wireguard/{domain}/all {key}"
    )
    # A key published before the worker's first connection is not queued for it (no session
    # yet): publish again until it shows up; adding a key twice is a no-op.
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        out = host.run(f"{publish} && sleep 2 && wg show {wg} allowed-ips").stdout
        peers = dict(line.split("\t", 1) for line in out.splitlines())
        if key in peers:
            break
        if time.monotonic() > deadline:
            log = host.run("journalctl -u wk-worker --no-pager").stdout
            pytest.fail(f"key not on {wg} within {SETTLE_SECONDS} s; worker log:\n{log}")
    assert ipaddress.ip_network(peers[key]) == ipaddress.ip_network(f"{lladdr}/128")
    routes = json.loads(host.check_output(f"ip -j -6 route show dev {wg}"))
    assert lladdr in {ipaddress.ip_address(r["dst"]) for r in routes if "/" not in r["dst"]}
    fdb = json.loads(host.check_output(f"bridge -j fdb show dev {vx}"))
    # iproute2 6.1 names the outgoing interface "viaIf" in JSON ("via" in its text output)
    flood = {
        ipaddress.ip_address(e["dst"])
        for e in fdb
        if e["mac"] == "00:00:00:00:00:00" and e.get("viaIf", e.get("via")) == wg
    }
    assert lladdr in flood  # with the journal of an earlier verify run, earlier keys come back too
    log = host.run("journalctl -u wk-worker --no-pager").stdout
    assert f"interface {wg}: WireGuard backend kernel" in log
