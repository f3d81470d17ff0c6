"""site.yml all-in-one: mosquitto, the broker, the gateway and its worker on one container:
services under their users, config file modes, /health, the uplink HTTP server beside the
broker on port 80, and a key POSTed to the broker becoming a peer."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The repository root: tests.support is shared by the tests, bench/ and Molecule.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.support.molecule import INVENTORY, http, podman_hosts, uplink_status

testinfra_hosts = podman_hosts("gateways")

WG = "wg-welt"
DOMAIN = "ffmuc_welt"


def _secrets():
    variables = INVENTORY.get_variables(INVENTORY.get_hosts("gateways")[0])
    return list(variables["wgmesh_mqtt_passwords"].values())


@pytest.mark.parametrize(
    ("service", "user", "capabilities"),
    [("wgmesh-broker", "wgmesh-broker", "cap_net_bind_service"), ("wgmesh-worker", "root", "cap_net_admin")],
)
def test_service_runs_as_its_user_with_only_its_capability(host, service, user, capabilities):
    assert host.service(service).is_running
    assert host.service(service).is_enabled
    pid = host.check_output(f"systemctl show -p MainPID --value {service}")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == user
    bounding = host.check_output(f"grep CapBnd /proc/{pid}/status").split()[1]
    decoded = host.check_output(f"capsh --decode={bounding}") if host.exists("capsh") else ""
    # CAP_NET_BIND_SERVICE is bit 10, CAP_NET_ADMIN bit 12: the only bit set.
    bit = {"cap_net_bind_service": 10, "cap_net_admin": 12}[capabilities]
    assert int(bounding, 16) == 1 << bit, decoded or bounding


@pytest.mark.parametrize("daemon", ["broker", "worker"])
def test_config_file_is_readable_by_root_and_the_service_group_only(host, daemon):
    config = host.file(f"/etc/wgmesh/{daemon}.yaml")
    assert config.user == "root"
    assert config.group == f"wgmesh-{daemon}"
    assert config.mode == 0o640


def test_no_secret_in_the_unit_files_or_the_journal(host):
    units = host.check_output("cat /etc/systemd/system/wgmesh-broker.service /etc/systemd/system/wgmesh-worker.service")
    journal = host.check_output("journalctl -u wgmesh-broker -u wgmesh-worker --no-pager")
    for secret in _secrets():
        assert secret not in units
        assert secret not in journal


def test_broker_health(host):
    reply = json.loads(
        host.check_output(
            "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1/health').read().decode())\""
        )
    )
    assert reply["status"] == "ok"


def _wait_for_peer(host, key):
    for dummy in range(100):
        peers = host.check_output(f"wg show {WG} allowed-ips")
        if key in peers:
            return peers
        time.sleep(0.1)
    return peers


def test_a_posted_key_becomes_a_peer_with_its_link_local_address(host):
    key = host.check_output("wg genkey | wg pubkey")
    status, text = http(host, "http://127.0.0.1/api/v2/wg/key/exchange", {"domain": DOMAIN, "public_key": key})
    assert status == 200, text
    assert json.loads(text)["Endpoint"]["Address"] == "gw1.example.net"
    peers = _wait_for_peer(host, key)
    line = next((line for line in peers.splitlines() if line.startswith(key)), "")
    assert "fe80::" in line and line.endswith("/128"), peers
    # A 200 is also on the broker's disk, to republish after a mosquitto crash (key buffer).
    buffer = host.file("/var/lib/wgmesh-broker/keys.jsonl")
    assert buffer.mode == 0o600 and buffer.user == "wgmesh-broker"
    assert key in buffer.content_string


def test_a_bad_key_is_refused(host):
    status, text = http(host, "http://127.0.0.1/api/v2/wg/key/exchange", {"domain": DOMAIN, "public_key": "not-a-key"})
    assert status == 400, text


def test_worker_health_and_metrics(host):
    out = host.check_output(
        "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:9561/health').status)\""
    )
    assert out == "200"


def test_uplink_check_answers_beside_the_broker_on_port_80(host):
    """The Gluon uplink check (busybox httpd on wg-welt's link-local) and the broker share port 80."""
    lladdr = host.check_output(f"ip -6 -o address show dev {WG} scope link").split()[3].split("/")[0]
    assert uplink_status(host, lladdr, WG) == 200
    status, text = http(host, "http://127.0.0.1/health")
    assert status == 200 and json.loads(text)["status"] == "ok", text


def test_no_secret_in_a_check_run_with_diff_and_vvv(host):
    """site.yml --check --diff -vvv over the converged host prints none of its secrets."""
    secrets = _secrets() + host.check_output("cat /etc/wireguard/*.key").split()
    admin = host.check_output("cat /etc/mosquitto/wgmesh-admin/mosquitto_pub")
    secrets.append(admin.split("-P ", 1)[1].split()[0])
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    root = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "--check", "--diff"]
    result = subprocess.run([*command, "-vvv", str(root / "site.yml")], capture_output=True, text=True, check=False)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert len(log.splitlines()) > 1000  # -vvv really printed the module arguments and results
    leaked = [secret[:4] + "..." for secret in secrets if secret in log]
    assert not leaked, f"secrets in the log: {leaked}"
