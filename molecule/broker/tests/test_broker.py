"""The broker role alone: its service, user and capability, /health, the config file, the key lists."""

import json
import os
import shlex

from testinfra.utils.ansible_runner import AnsibleRunner

# testinfra's podman backend: its ansible backend would run every command as an ad-hoc task.
INVENTORY = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = [f"podman://{name}" for name in INVENTORY.get_hosts("broker")]

CAP_NET_BIND_SERVICE = 1 << 10


def _get(host, path):
    script = (
        "import sys, urllib.request as u, urllib.error as e\n"
        "try:\n    r = u.urlopen('http://127.0.0.1' + sys.argv[1]); print(r.status); print(r.read().decode())\n"
        "except e.HTTPError as x:\n    print(x.code); print(x.read().decode())\n"
    )
    status, _, text = host.check_output(f"python3 -c {shlex.quote(script)} {path}").partition("\n")
    return int(status), text


def _post(host, body):
    script = (
        "import sys, urllib.request as u, urllib.error as e\n"
        "req = u.Request('http://127.0.0.1/api/v1/wg/key/exchange', data=sys.argv[1].encode(),"
        " headers={'Content-Type': 'application/json'})\n"
        "try:\n    r = u.urlopen(req); print(r.status); print(r.read().decode())\n"
        "except e.HTTPError as x:\n    print(x.code); print(x.read().decode())\n"
    )
    output = host.check_output(f"python3 -c {shlex.quote(script)} {shlex.quote(json.dumps(body))}")
    status, _, text = output.partition("\n")
    return int(status), text


def test_runs_as_its_own_user_with_only_cap_net_bind_service(host):
    service = host.service("wgmesh-broker")
    assert service.is_running and service.is_enabled
    pid = host.check_output("systemctl show -p MainPID --value wgmesh-broker")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "wgmesh-broker"
    status = host.file(f"/proc/{pid}/status").content_string
    caps = dict(line.split(":\t") for line in status.splitlines() if line.startswith("Cap"))
    assert int(caps["CapBnd"], 16) == CAP_NET_BIND_SERVICE
    assert int(caps["CapAmb"], 16) == CAP_NET_BIND_SERVICE
    assert host.socket("tcp://:::80").is_listening or host.socket("tcp://0.0.0.0:80").is_listening


def test_health_says_ok(host):
    status, text = _get(host, "/health")
    assert status == 200, text
    assert json.loads(text)["mqtt"] == "connected"


def test_config_file_mode_and_state_directory(host):
    config = host.file("/etc/wgmesh/broker.yaml")
    assert (config.user, config.group, config.mode) == ("root", "wgmesh-broker", 0o640)
    state = host.file("/var/lib/wgmesh-broker")
    assert state.is_directory and state.user == "wgmesh-broker" and state.mode == 0o700


def test_blocklisted_key_and_bad_key_are_refused(host):
    status, text = _post(host, {"domain": "ffmuc_uml", "public_key": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="})
    assert status == 403, text
    status, text = _post(host, {"domain": "ffmuc_welt", "public_key": "not-a-key"})
    assert status == 400, text


def test_no_secret_in_the_unit_or_the_journal(host):
    secret = INVENTORY.get_variables(INVENTORY.get_hosts("broker")[0])["wgmesh_brokers"][0]["password"]
    assert secret not in host.file("/etc/systemd/system/wgmesh-broker.service").content_string
    assert secret not in host.check_output("journalctl -u wgmesh-broker --no-pager")
    assert secret in host.file("/etc/wgmesh/broker.yaml").content_string  # where it belongs
