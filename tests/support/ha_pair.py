"""An HA pair's two members as the broker sees them: one identity, one MQTT user, two client ids.

Each member is a `Gateway` (its own namespace, wireguard-go, worker) whose worker runs with the
pair's identity as its name, its own client id and its own HA state file (what `wgmesh-ha`
writes). mosquitto runs with the mqtt role's real ACL (tests/support/mqtt_acl.py). `Timeline`
records every message on the pair's status and data topics with the moment it arrived, so a
test can say how long a wrong value was visible.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.gateway import PREFIX
from tests.support.mqtt_acl import render_acl
from tests.support.procs import out, run, terminate, wait_until
from wgmesh import mqtt, protocol
from wgmesh.config import MqttConfig
from wgmesh.ha import state

IDENTITY = "pairgw"
BROKER_USER = "broker1"
PASSWORDS = {IDENTITY: "pair-secret", BROKER_USER: "broker-secret"}
CLIENT_IDS = ("member-a", "member-b")


def pair_acl(domain: str) -> str:
    return render_acl(
        mqtt_domains=[domain],
        mqtt_brokers=[{"name": BROKER_USER}],
        mqtt_gateways=[{"name": IDENTITY, "client_ids": list(CLIENT_IDS)}],
    )


def start_member(gw, mosquitto_port: int, domain: str, client_id: str, role: str, **worker) -> None:
    """Write the member's state file (`role`: active/standby) and config, then start its worker."""
    gw.state_file = gw.workdir / f"ha-state-{gw.id}"
    state.write(str(gw.state_file), role)
    auth = {"username": IDENTITY, "password": PASSWORDS[IDENTITY], "client_id": client_id, "keepalive": 2}
    gw.write_config(domain, PREFIX, 1883, mqtt_extra=auth, name=IDENTITY, ha_state_file=str(gw.state_file), **worker)
    gw.start_worker(mosquitto_port)


def set_role(gw, role: str) -> None:
    state.write(str(gw.state_file), role)


def cut_silently(gw) -> None:
    """A crashed host: every packet in the member's namespace is dropped, so no FIN or RST
    reaches mosquitto (its TCP connection stays open until the keepalive runs out); then the
    worker dies behind the cut."""
    rules = (
        "table inet hostcrash {\n"
        "  chain out { type filter hook output priority -300; policy drop; }\n"
        "  chain in { type filter hook input priority -300; policy drop; }\n"
        "}\n"
    )
    run("ip", "netns", "exec", gw.netns, "nft", "-f", "-", input=rules)
    gw.stop_worker(hard=True)


@dataclass
class Timeline:
    """Messages on the identity's status topic and the domain's data topic, as a broker reads them."""

    port: int
    domain: str
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic, topic, payload)

    def __post_init__(self) -> None:
        cfg = MqttConfig(broker_url="127.0.0.1", broker_port=self.port, username=BROKER_USER,
                         password=PASSWORDS[BROKER_USER])  # fmt: skip
        self.status_topic = protocol.topic_status(IDENTITY)
        self.data_topic = protocol.topic_data(IDENTITY, self.domain)
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.make_client(cfg, client_id=f"h6-watch-{secrets.token_hex(3)}")

        def on_connect(client, userdata, flags, reason_code, properties):
            client.subscribe([(self.status_topic, 1), (self.data_topic, 1)])

        def on_message(client, userdata, message):
            with self.lock:
                self.events.append((time.monotonic(), message.topic, message.payload.decode()))

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = on_message
        mqtt.connect_async(self.client, cfg)
        self.client.loop_start()
        assert subscribed.wait(10), "the timeline could not subscribe"

    def statuses(self, since: float = 0.0) -> list[tuple[float, str]]:
        with self.lock:
            return [(t, p) for t, topic, p in self.events if topic == self.status_topic and t >= since]

    def first(self, payload: str, since: float) -> float | None:
        """When `payload` first arrived on the status topic at or after `since`, or None."""
        return next((t for t, p in self.statuses(since) if p == payload), None)

    def data(self) -> list[str]:
        with self.lock:
            return [p for t, topic, p in self.events if topic == self.data_topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained_status(port: int) -> str | None:
    """What a broker that connects now reads: the retained status of the identity."""
    watch = Timeline(port, "unused")
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = watch.statuses()
            if found:
                return found[-1][1]
            time.sleep(0.05)
        return None
    finally:
        watch.close()


@dataclass
class Node:
    """A node's WireGuard interface in a member's namespace, with the member as its only peer
    (over loopback) and a keepalive, so the member sees a handshake and an endpoint."""

    gw: object
    ifname: str = ""
    public_key: str = ""
    listen_port: int = 0
    proc: subprocess.Popen | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Node:
        self.ifname = f"n-{self.gw.id}-{secrets.token_hex(2)}"[:15]
        env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.gw.netns, "wireguard-go", self.ifname],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: Path(f"/var/run/wireguard/{self.ifname}.sock").exists(), 10, what=f"{self.ifname} socket")
        keyfile = self.gw.workdir / f"{self.ifname}.key"
        keyfile.touch(mode=0o600)
        keyfile.write_text(out("wg", "genkey"))
        self.public_key = out("wg", "pubkey", input=keyfile.read_text()).strip()
        self.listen_port = 20000 + secrets.randbelow(20000)
        self.gw.ns("wg", "set", self.ifname, "private-key", str(keyfile), "listen-port", str(self.listen_port))
        self.gw.ns("ip", "link", "set", self.ifname, "up")
        return self

    def dial(self) -> None:
        """Handshake with the member now and keep the session (its key must be a peer there)."""
        self.gw.ns("wg", "set", self.ifname, "peer", self.gw.public_key, "endpoint", f"127.0.0.1:{self.gw.listen_port}",
                   "allowed-ips", f"{self.gw.lladdr}/128", "persistent-keepalive", "1")  # fmt: skip

    def keep_handshaking(self, every: float) -> None:
        """A new handshake every `every` seconds (WireGuard itself rekeys only every 2 minutes), so
        the member's stale-peer cleanup, run with a short stale_after in tests, keeps this peer."""

        def loop() -> None:
            while not self.stopping.wait(every):
                self.gw.ns("wg", "set", self.ifname, "peer", self.gw.public_key, "remove", check=False)
                self.dial()

        threading.Thread(target=loop, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.listen_port}"

    def stop(self) -> None:
        self.stopping.set()
        if self.proc is not None:
            terminate(self.proc, timeout=5)
        Path(f"/var/run/wireguard/{self.ifname}.sock").unlink(missing_ok=True)


def endpoints_of(gw) -> dict[str, str]:
    """key -> endpoint of the peers on the member's wg- that have one."""
    found = {}
    for line in gw.ns("wg", "show", gw.wg, "dump").splitlines()[1:]:
        fields = line.split("\t")
        if fields[2] != "(none)":
            found[fields[0]] = fields[2]
    return found
