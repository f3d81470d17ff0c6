"""The broker role behind nginx: the broker's user and capabilities, /health over
TLS, the key exchange over plain HTTP, everything else redirected, the config file."""

import json
import os
import shlex

from testinfra.utils.ansible_runner import AnsibleRunner

# testinfra's podman backend: its ansible backend would run every command as an ad-hoc task.
INVENTORY = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = [f"podman://{name}" for name in INVENTORY.get_hosts("broker")]

# A request from inside the container; prints the status, then the body.
# Redirects are not followed; the test certificate is self-signed.
REQUEST = """
import ssl, sys, urllib.request as u, urllib.error as e
class Stay(u.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None
opener = u.build_opener(Stay, u.HTTPSHandler(context=ssl._create_unverified_context()))
data = sys.argv[2].encode() if len(sys.argv) > 2 else None
req = u.Request(sys.argv[1], data=data, headers={'Content-Type': 'application/json'})
try:
    r = opener.open(req); print(r.status); print(r.read().decode())
except e.HTTPError as x:
    print(x.code); print(x.headers.get('Location') or x.read().decode())
"""


def _request(host, url, body=None):
    args = [url] + ([json.dumps(body)] if body is not None else [])
    output = host.check_output(f"python3 -c {shlex.quote(REQUEST)} {' '.join(map(shlex.quote, args))}")
    status, dummy, text = output.partition("\n")
    return int(status), text


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
    status, text = _request(host, "https://127.0.0.1/health")
    assert status == 200, text
    assert json.loads(text)["mqtt"] == "connected"
    status, location = _request(host, "http://127.0.0.1/health")
    assert status == 301 and location.startswith("https://"), location


def test_key_exchange_over_plain_http_reaches_the_broker(host):
    url = "http://127.0.0.1/api/v1/wg/key/exchange"
    blocked = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
    status, text = _request(host, url, {"domain": "ffmuc_uml", "public_key": blocked})
    assert status == 403, text  # the broker's blocklist answered, through nginx
    status, text = _request(host, url, {"domain": "ffmuc_welt", "public_key": "not-a-key"})
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
