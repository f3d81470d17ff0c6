"""The broker role behind nginx: the broker's user and capabilities, /health over
TLS, the key exchange over plain HTTP, everything else redirected, the config file."""

import json
import sys
from pathlib import Path

# The repository root: tests.support is shared by the tests, bench/ and Molecule.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.support.molecule import INVENTORY, http, podman_hosts

testinfra_hosts = podman_hosts("broker")


def test_runs_as_its_own_user_without_capabilities_behind_nginx(host):
    service = host.service("wgmesh-broker")
    assert service.is_running and service.is_enabled
    pid = host.check_output("systemctl show -p MainPID --value wgmesh-broker")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "wgmesh-broker"
    status = host.file(f"/proc/{pid}/status").content_string
    caps = dict(line.split(":\t") for line in status.splitlines() if line.startswith("Cap"))
    # Behind nginx it listens on a loopback port above 1024: no capability at all.
    assert int(caps["CapBnd"], 16) == 0 and int(caps["CapEff"], 16) == 0
    assert host.socket("tcp://127.0.0.1:5000").is_listening
    assert host.service("nginx").is_running


def test_health_over_tls_and_plain_http_redirected(host):
    status, text = http(host, "https://127.0.0.1/health")
    assert status == 200, text
    assert json.loads(text)["mqtt"] == "connected"
    status, location = http(host, "http://127.0.0.1/health")
    assert status == 301 and location.startswith("https://"), location


def test_key_exchange_over_plain_http_reaches_the_broker(host):
    url = "http://127.0.0.1/api/v1/wg/key/exchange"
    blocked = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
    status, text = http(host, url, {"domain": "ffmuc_uml", "public_key": blocked})
    assert status == 403, text  # the broker's blocklist answered, through nginx
    status, text = http(host, url, {"domain": "ffmuc_welt", "public_key": "not-a-key"})
    assert status == 400, text


def test_config_trusts_loopback_and_has_its_modes(host):
    config = host.file("/etc/wgmesh/broker.yaml")
    assert (config.user, config.group, config.mode) == ("root", "wgmesh-broker", 0o640)
    assert "127.0.0.1/32" in config.content_string  # broker.trusted_proxies: nginx
    state = host.file("/var/lib/wgmesh-broker")
    assert state.is_directory and state.user == "wgmesh-broker" and state.mode == 0o700


def test_no_secret_in_the_unit_or_the_journal(host):
    secret = INVENTORY.get_variables(INVENTORY.get_hosts("broker")[0])["wgmesh_mqtt_passwords"]["wgmesh-broker"]
    assert secret not in host.file("/etc/systemd/system/wgmesh-broker.service").content_string
    assert secret not in host.check_output("journalctl -u wgmesh-broker --no-pager")
    assert secret in host.file("/etc/wgmesh/broker.yaml").content_string  # where it belongs
