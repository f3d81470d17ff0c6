"""The mqtt role's mosquitto config in a real mosquitto (Debian's 2.0.11 on the host).

- 1,500 keys published while a gateway's MQTT 5 persistent session is offline
  all arrive with the role's queue sizes; with mosquitto's default queue
  (1,000 messages) the same run loses keys, which is why the role sizes it.
- The role's config check (a throwaway mosquitto) accepts the role's files and
  refuses broken ones with mosquitto's own message.

mosquitto runs as root here (user root) because pytest's tmp dirs are 0700;
the role's real ownership is checked by molecule/mqtt.
"""

from __future__ import annotations

import base64
import grp
import os
import secrets
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.integration.roles.mqtt_role import ROLE, render, variables, write_password_file
from tests.support.net import free_port, wait_for_port
from tests.support.procs import terminate
from wgmesh import protocol

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
CHECK_TOOL = ROLE / "files" / "mosquitto_config_check.py"
DOMAIN = "ffmuc_welt"
BROKER = {"name": "broker1", "password": "broker-pw"}
GATEWAY = {"name": "gw1", "password": "gw-pw", "client_ids": ["gw1a"]}
KEYS = 1500
# A safety net against a hang, never a measured limit.
PATIENCE_S = 120

pytestmark = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="mosquitto not installed (Debian package mosquitto)"
)


def role_files(workdir: Path, **overrides) -> dict:
    """The role's mosquitto.conf, ACL and password file under workdir; returns the context."""
    (workdir / "data").mkdir()
    context = variables(
        mqtt_domains=[DOMAIN],
        mqtt_brokers=[{"name": BROKER["name"]}],
        mqtt_gateways=[{"name": GATEWAY["name"], "client_ids": GATEWAY["client_ids"]}],
        mqtt_port=free_port(),
        mqtt_bind_address="127.0.0.1",
        _mqtt_persistence_dir=f"{workdir}/data/",
        _mqtt_password_path=str(workdir / "passwd"),
        _mqtt_acl_path=str(workdir / "acl"),
        **overrides,
    )
    (workdir / "acl").write_text(render("wgmesh.acl.j2", context))
    write_password_file(workdir / "passwd", [BROKER, GATEWAY], grp.getgrgid(os.getgid()).gr_name)
    lines = render("mosquitto.conf.j2", context).splitlines()
    # The host's pid file and syslog belong to the host's own mosquitto.
    lines = [line for line in lines if not line.startswith(("pid_file", "log_dest", "log_type"))]
    lines += [f"log_dest file {workdir}/mosquitto.log", "log_type all", "user root"]
    (workdir / "mosquitto.conf").write_text("\n".join(lines) + "\n")
    return context


@pytest.fixture
def mosquitto(tmp_path):
    """Start mosquitto with a config made by role_files(); stopped by PID at teardown."""
    started = []

    def start(conf: Path, port: int) -> subprocess.Popen:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append(proc)
        try:
            wait_for_port("127.0.0.1", port, timeout=PATIENCE_S, proc=proc)
        except RuntimeError:
            pytest.fail(proc.stderr.read().decode())
        return proc

    yield start
    for proc in started:
        terminate(proc)
        proc.stderr.close()


def client(port: int, account: dict, client_id: str, clean_start: bool, on_message=None) -> paho.Client:
    mqtt = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    # Before connecting: queued messages follow the CONNACK at once.
    mqtt.on_message = on_message
    mqtt.username_pw_set(account["name"], account["password"])
    connected = threading.Event()
    mqtt.on_connect = lambda *args: connected.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600  # a persistent session, as the worker keeps
    mqtt.connect("127.0.0.1", port, clean_start=clean_start, properties=properties)
    mqtt.loop_start()
    assert connected.wait(PATIENCE_S)
    return mqtt


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def keys_after_offline_burst(workdir: Path, mosquitto, **overrides) -> tuple[int, str]:
    """Keys a gateway receives of KEYS published while its session was offline, and mosquitto's log."""
    context = role_files(workdir, **overrides)
    port = context["mqtt_port"]
    mosquitto(workdir / "mosquitto.conf", port)
    topic = protocol.topic_key(DOMAIN)

    gateway = client(port, GATEWAY, "gw1a", clean_start=True)
    subscribed = threading.Event()
    gateway.on_subscribe = lambda *args: subscribed.set()
    gateway.subscribe(topic, qos=protocol.QOS_KEY)
    assert subscribed.wait(PATIENCE_S)
    # Gone for sure before the first key: a key sent to a closing connection
    # would be acknowledged by paho and lost to this count.
    gone = threading.Event()
    gateway.on_disconnect = lambda *args: gone.set()
    gateway.disconnect()
    assert gone.wait(PATIENCE_S)
    gateway.loop_stop()

    broker = client(port, BROKER, "broker1", clean_start=True)
    sent = [new_key() for dummy in range(KEYS)]
    infos = [broker.publish(topic, key, qos=protocol.QOS_KEY) for key in sent]
    for info in infos:
        info.wait_for_publish(PATIENCE_S)
        assert info.is_published()

    received: set[str] = set()
    sentinel, done = "end-of-burst", threading.Event()

    def on_message(dummy_client, dummy_userdata, message):
        payload = message.payload.decode()
        if payload == sentinel:
            done.set()
        else:
            received.add(payload)

    gateway = client(port, GATEWAY, "gw1a", clean_start=False, on_message=on_message)
    # Published after the gateway is back, so queued behind everything it missed.
    broker.publish(topic, sentinel, qos=protocol.QOS_KEY).wait_for_publish(PATIENCE_S)
    assert done.wait(PATIENCE_S)
    for mqtt in (gateway, broker):
        mqtt.disconnect()
        mqtt.loop_stop()
    assert received <= set(sent)
    return len(received), (workdir / "mosquitto.log").read_text(errors="replace")


def test_role_queue_keeps_every_key_for_an_offline_gateway(tmp_path, mosquitto):
    count, log = keys_after_offline_burst(tmp_path, mosquitto)
    assert count == KEYS
    assert "Outgoing messages are being dropped" not in log


def test_mosquitto_default_queue_drops_keys_in_the_same_run(tmp_path, mosquitto, monkeypatch):
    # The same files without the role's queue lines: mosquitto's defaults apply.
    original = role_files

    def without_queue_sizes(workdir, **overrides):
        context = original(workdir, **overrides)
        conf = workdir / "mosquitto.conf"
        lines = conf.read_text().splitlines()
        conf.write_text("\n".join(line for line in lines if not line.startswith("max_queued_")) + "\n")
        return context

    monkeypatch.setattr(sys.modules[__name__], "role_files", without_queue_sizes)
    count, log = keys_after_offline_burst(tmp_path, mosquitto)
    print(f"mosquitto defaults: {count} of {KEYS} keys arrived")
    assert count < KEYS
    assert "Outgoing messages are being dropped" in log


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK_TOOL), *args], capture_output=True, text=True, check=False)


def test_config_check_accepts_the_roles_files(tmp_path):
    role_files(tmp_path)
    result = check("--conf", str(tmp_path / "mosquitto.conf"), "--acl-file", str(tmp_path / "acl"))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("conf", 'Unknown configuration variable "max_queued_mesages"'),
        ("acl", 'Invalid topic access type "wirte"'),
        ("tls", "Unable to load server certificate"),
    ],
)
def test_config_check_refuses_with_mosquittos_message(tmp_path, broken, message):
    overrides = {}
    if broken == "tls":
        overrides = {"mqtt_tls": True, "mqtt_tls_certfile": str(tmp_path / "missing.crt"), "mqtt_tls_keyfile": "/x.key"}
    role_files(tmp_path, **overrides)
    conf, acl = tmp_path / "mosquitto.conf", tmp_path / "acl"
    if broken == "conf":
        conf.write_text(conf.read_text().replace("max_queued_messages", "max_queued_mesages"))
    if broken == "acl":
        acl.write_text(acl.read_text().replace("topic write", "topic wirte", 1))
    result = check("--conf", str(conf), "--acl-file", str(acl))
    assert result.returncode == 1
    assert "mosquitto refuses this configuration" in result.stderr
    assert message in result.stderr
