"""Gateways in network namespaces with wireguard-go and VXLAN, a worker in each, and an MQTT publisher.

Each `Gateway` is a namespace `h6-<id>` holding a wireguard-go interface `wg-<id>` (with its
private key, listen port and link-local address, like the gateway role sets it up) and a VXLAN
device `vx-<id>` over it. Names carry a random id: wireguard-go's sockets
(/var/run/wireguard/<if>.sock) are global to the host, and several test runs may share it.
The worker runs inside the namespace (`ip netns exec`); mosquitto listens on the host's
loopback, which a namespace cannot reach, so a small relay listens on 127.0.0.1 inside the
namespace and forwards to the host's mosquitto. Everything is removed by PID / name in
`destroy()`. Used by the services tests (the `gateways` fixture) and by bench/.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.support.net import setns
from tests.support.procs import Unavailable, out, run, terminate, wait_until
from wgmesh import derive, mqtt, protocol
from wgmesh.config import MqttConfig

WORKER_BIN = str(Path(sys.executable).with_name("wgmesh-worker"))
PREFIX = "t_"  # test domains t_<hex>; interface names come from worker.interfaces


def require_tools() -> None:
    """Raise Unavailable unless this host can run gateways (tools and root)."""
    for tool in ("wireguard-go", "wg", "ip", "bridge"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} not installed (Debian packages wireguard-go, wireguard-tools, iproute2)")
    if os.geteuid() != 0:
        raise Unavailable("network namespaces need root")


VM_TIER = "runs in the VM tier: molecule/worker-kernel-vm"


def missing_kernel_modules(*modules: str) -> str | None:
    """Why these kernel modules are not usable here (a skip reason), or None when they are.

    A module not loaded yet is loaded with modprobe; a missing modprobe (Debian package kmod)
    counts as "not available here", like a missing module: a probe reports, it never crashes.
    """
    for module in modules:
        if os.path.isdir(f"/sys/module/{module}"):
            continue
        modprobe = shutil.which("modprobe")
        if modprobe is None:
            return f"the {module} module is not loaded and modprobe is not installed (Debian package kmod); {VM_TIER}"
        probe = subprocess.run([modprobe, module], capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            error = probe.stderr.strip() or f"modprobe {module}: exit code {probe.returncode}"
            return f"the kernel has no {module} module ({error}); {VM_TIER}"
    return None


class Relay:
    """TCP relay: 127.0.0.1:<port> inside a namespace -> 127.0.0.1:<target> on the host."""

    def __init__(self, netns: str, port: int, target_port: int):
        self.target_port = target_port
        self.conns: list[socket.socket] = []
        self.closed = False
        ready = threading.Event()
        error: list[BaseException] = []

        def listen() -> None:
            # setns changes only this thread; the listening socket stays in the namespace
            host_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            ns = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
            try:
                setns(ns, netns)
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.sock.bind(("127.0.0.1", port))
                self.sock.listen(64)
                setns(host_ns, "of the host")  # connections to mosquitto leave from the host namespace
            except BaseException as exc:
                error.append(exc)
                return
            finally:
                os.close(ns)
                os.close(host_ns)
                ready.set()
            self._accept_loop()

        self.thread = threading.Thread(target=listen, daemon=True)
        self.thread.start()
        ready.wait()
        if error:
            raise error[0]

    def _accept_loop(self) -> None:
        while not self.closed:
            try:
                down, dummy = self.sock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                up.settimeout(None)
            except OSError:
                down.close()  # mosquitto is down: the worker retries by itself
                continue
            for s in (down, up):  # forward small MQTT packets (PUBACK) at once, as paho does
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()


@dataclass
class Gateway:
    """A namespace with wg-<id> (wireguard-go) and vx-<id>; plus the worker that runs in it."""

    id: str
    workdir: Path
    netns: str = ""
    wg: str = ""
    vx: str = ""
    listen_port: int = 0
    public_key: str = ""
    lladdr: str = ""
    wg_proc: subprocess.Popen | None = None
    worker_proc: subprocess.Popen | None = None
    relay: Relay | None = None
    config_path: Path | None = None
    logs: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.netns, self.wg, self.vx = f"h6-{self.id}", f"wg-{self.id}", f"vx-{self.id}"

    # --- the interfaces (what the gateway role creates; never the worker) -------------
    def create(self, vxlan: bool = True) -> None:
        run("ip", "netns", "add", self.netns)
        self.ns("ip", "link", "set", "lo", "up")
        keyfile = self.workdir / f"{self.wg}.key"
        keyfile.touch(mode=0o600)
        keyfile.write_text(out("wg", "genkey"))
        self.public_key = out("wg", "pubkey", input=keyfile.read_text()).strip()
        self.listen_port = 40000 + secrets.randbelow(20000)  # inside our own namespace only
        self.lladdr = str(derive.lladdr_from_key(self.public_key))
        self.add_wireguard()
        if vxlan:
            self.add_vxlan()

    def add_wireguard(self) -> None:
        """wg-<id> with its key, port and link-local address, as wgmesh-wg@ and networkd set it up."""
        env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error")
        self.wg_proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "wireguard-go", self.wg],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: Path(f"/var/run/wireguard/{self.wg}.sock").exists(), 10, what=f"{self.wg} socket")
        keyfile = self.workdir / f"{self.wg}.key"
        self.ns("wg", "set", self.wg, "private-key", str(keyfile), "listen-port", str(self.listen_port))
        self.ns("ip", "link", "set", self.wg, "up")
        self.ns("ip", "-6", "addr", "add", f"{self.lladdr}/64", "dev", self.wg, "nodad")

    def add_vxlan(self) -> None:
        self.ns("ip", "link", "add", self.vx, "type", "vxlan", "id", "4831583", "dstport", "8472",
                "local", self.lladdr, "dev", self.wg)  # fmt: skip
        self.ns("ip", "link", "set", self.vx, "up")

    def has_link(self, ifname: str) -> bool:
        return run("ip", "-n", self.netns, "link", "show", ifname, check=False).returncode == 0

    def recreate_wireguard(self) -> None:
        """What a restart of wgmesh-wg@ does: the device goes (taking its peers, routes and the
        VXLAN device stacked on it along) and comes back empty; networkd then stacks vx- again."""
        if self.wg_proc:
            terminate(self.wg_proc, timeout=5)
        wait_until(lambda: not self.has_link(self.wg), 10, what=f"{self.wg} gone")
        Path(f"/var/run/wireguard/{self.wg}.sock").unlink(missing_ok=True)
        self.add_wireguard()
        if not self.has_link(self.vx):
            self.add_vxlan()

    def ns(self, *args: str, check: bool = True) -> str:
        return out("ip", "netns", "exec", self.netns, *args, check=check)

    def destroy(self) -> None:
        self.stop_worker(hard=True)
        if self.relay:
            self.relay.close()
        if self.wg_proc:
            terminate(self.wg_proc, timeout=5)
        run("ip", "netns", "del", self.netns, check=False)
        Path(f"/var/run/wireguard/{self.wg}.sock").unlink(missing_ok=True)

    # --- what the tests look at ----------------------------------------------------
    def peers(self) -> dict[str, dict]:
        """wg show dump: key -> {allowed_ips, handshake}."""
        out = {}
        for line in self.ns("wg", "show", self.wg, "dump").splitlines()[1:]:
            f = line.split("\t")
            out[f[0]] = {"allowed_ips": f[3], "handshake": int(f[4])}
        return out

    def routes(self) -> set[str]:
        out = self.ns("ip", "-6", "route", "show", "dev", self.wg)
        return {line.split()[0] for line in out.splitlines() if line and "/" not in line.split()[0]}

    def fdb(self) -> set[str]:
        out = self.ns("bridge", "fdb", "show", "dev", self.vx)
        found = set()
        for line in out.splitlines():
            f = line.split()
            if f and f[0] == "00:00:00:00:00:00" and "dst" in f and "via" in f and f[f.index("via") + 1] == self.wg:
                found.add(f[f.index("dst") + 1])
        return found

    def has_all(self, keys, rule: str = "ffmuc") -> bool:
        peers, routes, fdb = self.peers(), self.routes(), self.fdb()
        for key in keys:
            lladdr = str(derive.lladdr_from_key(key, rule))
            if peers.get(key, {}).get("allowed_ips") != f"{lladdr}/128" or lladdr not in routes or lladdr not in fdb:
                return False
        return True

    # --- the worker ---------------------------------------------------------------
    def write_config(self, domain: str, prefix: str, mqtt_port: int, mqtt_extra: dict | None = None, **worker) -> Path:
        """mqtt_extra: added to the mqtt section (user name, password, client id)."""
        self.config_path = self.workdir / f"worker-{self.id}.yaml"
        cfg = {
            "domains": [domain],
            "domain_prefixes": [prefix],
            "externalName": f"gw-{self.id}.example.net",
            "mqtt": {"broker_url": "127.0.0.1", "broker_port": mqtt_port, "keepalive": 5, **(mqtt_extra or {})},
            "worker": {
                "name": f"h6w-{self.id}",
                "journal": str(self.workdir / f"journal-{self.id}.json"),
                "interfaces": {domain: {"wg": self.wg, "vx": self.vx}},
                **worker,
            },
        }
        self.config_path.write_text(yaml.safe_dump(cfg))
        return self.config_path

    @property
    def name(self) -> str:
        return f"h6w-{self.id}"

    @property
    def journal_path(self) -> Path:
        return self.workdir / f"journal-{self.id}.json"

    def start_worker(self, mosquitto_port: int, relay_port: int = 1883, env: dict[str, str] | None = None) -> None:
        """env: added to the worker's environment (e.g. NOTIFY_SOCKET, as systemd sets it)."""
        if self.relay is None:
            self.relay = Relay(self.netns, relay_port, mosquitto_port)
        log = self.workdir / f"worker-{self.id}-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "w") as fh:
            self.worker_proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, WORKER_BIN, "--config", str(self.config_path), "--debug"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    def stop_worker(self, hard: bool = False) -> None:
        proc = self.worker_proc
        if proc is None or proc.poll() is not None:
            return
        # `ip netns exec` execs the worker, so this PID is the worker itself
        proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


class Publisher:
    """A QoS 1 publisher with a persistent session (as the broker is), on the host."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None):
        cfg = MqttConfig(broker_url="127.0.0.1", broker_port=port, username=username, password=password)
        self.client = mqtt.make_client(cfg, client_id=f"h6-pub-{secrets.token_hex(3)}", clean_start=False)
        self.retained: dict[str, str] = {}
        self.connected = threading.Event()

        def on_connect(c, u, flags, rc, props):
            c.subscribe([("wireguard-worker/#", 1), ("wireguard-metrics/#", 1)])
            self.connected.set()

        self.client.on_connect = on_connect
        self.client.on_message = lambda c, u, m: self.retained.__setitem__(m.topic, m.payload.decode())
        mqtt.connect_async(self.client, cfg)
        self.client.loop_start()
        assert self.connected.wait(10), "publisher could not connect to mosquitto"

    def keys(self, domain: str, keys: list[str]) -> None:
        infos = [self.client.publish(protocol.topic_key(domain), k, qos=protocol.QOS_KEY) for k in keys]
        for info in infos:
            info.wait_for_publish(timeout=30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_workers(gateways, mosquitto, publisher, domain, count=2, **worker):
    """Gateways with running workers, returned once each has subscribed (its status is "1":
    the worker subscribes before it publishes that). Keys published before a worker's very
    first subscription are not queued for it: mosquitto has no session for it yet."""
    started = [gateways() for dummy in range(count)]
    for gw in started:
        gw.write_config(domain, PREFIX, 1883, **worker)
        gw.start_worker(mosquitto.port)
    for gw in started:
        wait_until(
            lambda gw=gw: publisher.retained.get(protocol.topic_status(gw.name)) == "1", what=f"{gw.name} online"
        )
    return started
