"""What the mqtt role promises, checked inside the converged container.

The clients are Debian's mosquitto_pub/mosquitto_sub on the container, with
MQTT 5 so that a publish refused by the ACL is visible ("Not authorized"
in the PUBACK) instead of acknowledged and dropped as with MQTT 3.1.1.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

BROKER = ("broker1", "molecule-broker1-secret")
GW1 = ("gw1", "molecule-gw1-secret")
KEY = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
KEY_TOPIC = "wireguard/ffmuc_welt/all"
ADMIN_OPTIONS = "XDG_CONFIG_HOME=/etc/mosquitto/wgmesh-admin"


def pub(host, topic, message, user=None, *extra):
    auth = ["-u", user[0], "-P", user[1]] if user else []
    argv = ["mosquitto_pub", "-V", "mqttv5", "-h", "localhost", "-q", "1", "-t", topic, "-m", message, *auth, *extra]
    return host.run(shlex.join(argv))


def sub_command(user, client_id, *extra):
    argv = ["mosquitto_sub", "-V", "mqttv5", "-h", "localhost", "-q", "1", "-u", user[0], "-P", user[1]]
    return [*argv, "-i", client_id, "-t", KEY_TOPIC, *extra]


def test_files_and_service(host):
    assert host.service("mosquitto").is_running
    assert host.service("mosquitto").is_enabled
    passwd = host.file("/etc/mosquitto/wgmesh.passwd")
    assert (passwd.user, passwd.group, passwd.mode) == ("root", "mosquitto", 0o640)
    acl = host.file("/etc/mosquitto/wgmesh.acl")
    assert (acl.user, acl.group, acl.mode) == ("root", "mosquitto", 0o640)
    conf = host.file("/etc/mosquitto/mosquitto.conf").content_string
    for line in ("allow_anonymous false", "set_tcp_nodelay true", "autosave_interval 10", "max_queued_messages 20000"):
        assert line in conf.splitlines()
    assert "molecule-gw1-secret" not in passwd.content_string


def test_unit_is_sandboxed(host):
    """The role's drop-in is in effect on the running unit (Debian's own unit has no sandbox)."""
    shown = host.check_output("systemctl show mosquitto -p ProtectSystem -p NoNewPrivileges -p DropInPaths")
    assert "ProtectSystem=strict" in shown.splitlines()
    assert "NoNewPrivileges=yes" in shown.splitlines()
    assert "wgmesh-hardening.conf" in shown
    # The reload (SIGHUP from root to mosquitto, by then its own user) works inside the sandbox.
    host.run_expect([0], "systemctl reload mosquitto && sleep 1 && systemctl is-active mosquitto")
    # Printed, not asserted: the figure differs between a container and a VM.
    print(host.check_output("systemd-analyze security mosquitto.service --no-pager | tail -n 1"))


def test_anonymous_is_refused(host):
    result = pub(host, KEY_TOPIC, KEY)
    assert result.rc != 0
    assert "Not authorized" in result.stdout + result.stderr


def test_wrong_password_is_refused(host):
    result = pub(host, KEY_TOPIC, KEY, (GW1[0], "wrong"))
    assert result.rc != 0
    assert "Not authorized" in result.stdout + result.stderr


def test_gateway_cannot_publish_a_key(host):
    result = pub(host, KEY_TOPIC, KEY, GW1)
    assert "Publish 1 failed: Not authorized" in result.stderr


def test_gateway_cannot_publish_another_gateways_status(host):
    result = pub(host, "wireguard-worker/gw2/status", "0", GW1, "-r")
    assert "Publish 1 failed: Not authorized" in result.stderr


def test_gateway_may_publish_its_own_status(host):
    result = pub(host, "wireguard-worker/gw1/status", "1", GW1, "-r")
    assert result.rc == 0
    assert "failed" not in result.stderr


def test_broker_can_publish_a_key_that_a_gateway_receives(host):
    # The gateway's persistent session (MQTT 5, session expiry 1 h) exists first...
    created = host.run(shlex.join(sub_command(GW1, "gw1a", "-c", "-x", "3600", "-E")))
    assert created.rc == 0, created.stderr
    result = pub(host, KEY_TOPIC, KEY, BROKER)
    assert result.rc == 0
    assert "failed" not in result.stderr
    # ...so the key queued for it while it was away arrives when it returns.
    received = host.run(shlex.join(sub_command(GW1, "gw1a", "-c", "-x", "3600", "-C", "1", "-W", "30")))
    assert received.stdout.strip() == KEY


def test_generated_password_works(host):
    secrets_dir = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets"
    password = (secrets_dir / "mqtt-gw2").read_text().split()[0]
    result = pub(host, "wireguard-worker/gw2/status", "1", ("gw2", password), "-r")
    assert result.rc == 0
    assert "failed" not in result.stderr


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_queued_keys_survive_mosquitto(host, how):
    """A key queued for an offline gateway survives a restart, and a SIGKILL after the next autosave."""
    client_id = f"gw1b-{how}"
    assert host.run(shlex.join(sub_command(GW1, client_id, "-c", "-x", "3600", "-E"))).rc == 0
    key = {
        "restart": "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg=",
        "kill": "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg=",
    }[how]
    db = "/var/lib/mosquitto/mosquitto.db"
    before = host.run(f"stat -c %Y {db} 2>/dev/null || echo 0").stdout.strip()
    assert pub(host, KEY_TOPIC, key, BROKER).rc == 0
    if how == "restart":
        host.run_expect([0], "systemctl restart mosquitto")
    else:
        # Wait for the autosave after the publish (mtime moves on), then kill without a save.
        saved = f"[ $(stat -c %Y {db}) -gt {before} ]"
        host.run_expect([0], f"i=0; until {saved} || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done; {saved}")
        host.run_expect([0], "systemctl kill -s KILL mosquitto && systemctl restart mosquitto")
    host.run_expect([0], "i=0; until ss -ltn | grep -q ':1883 ' || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done")
    received = host.run(shlex.join(sub_command(GW1, client_id, "-c", "-x", "3600", "-C", "1", "-W", "30")))
    assert received.stdout.strip() == key


def test_removed_gateway_has_no_retained_topics(host):
    result = host.run(
        f"{ADMIN_OPTIONS} mosquitto_sub -V mqttv5 -h localhost -t 'wireguard-worker/gw-old/#'"
        " -t 'wireguard-metrics/+/gw-old/connected_peers' --retained-only -v -W 2"
    )
    assert result.rc == 27, result.stderr  # timed out: nothing retained
    assert result.stdout == ""
