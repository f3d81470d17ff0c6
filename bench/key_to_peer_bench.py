"""Key POST to the broker -> peer present on two workers: latency p50/p99 over N keys.

    sudo .venv/bin/python bench/key_to_peer_bench.py [--keys 1000] [--gap-ms 10]

Everything real and local: mosquitto (persistence on) on 127.0.0.1, the broker process, two
gateways in network namespaces (wireguard-go + VXLAN) each with a worker process, as the
integration tests build them (tests/support: mosquitto.py, broker.py, gateway.py).
Keys are POSTed one after the other (v2, `--gap-ms` apart); a listener per gateway takes the
kernel's route notifications and records when each node's /128 route appears (the worker
sets the peer first, then the route). Latency = the later of the two gateways minus the moment
the POST was sent. Target: p99 < 100 ms.
Bounded (`--timeout` per key) and cleans up everything it started.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine import describe  # bench/machine.py: the machine line every benchmark prints

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.support, shared with the tests

from tests.support.broker import BrokerProcess  # noqa: E402
from tests.support.gateway import PREFIX, Gateway, Publisher, require_tools  # noqa: E402
from tests.support.keys import new_key  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402
from tests.support.net import free_port, in_netns  # noqa: E402
from tests.support.procs import Unavailable, wait_until  # noqa: E402
from wgmesh import derive  # noqa: E402
from wgmesh.protocol import PATH_V2_EXCHANGE, topic_status  # noqa: E402
from wgmesh.worker import rtnl_bulk  # noqa: E402

RTMGRP_IPV6_ROUTE = 0x400
RTM_NEWROUTE = 24


class RouteWatcher(threading.Thread):
    """Listens to route notifications inside a gateway's namespace (no polling, no CPU taken
    from the workers) and notes when each /128 route appears. The worker adds the route right
    after the peer, so this is when peer AND route are in place."""

    def __init__(self, netns: str):
        super().__init__(daemon=True)
        self.seen: dict[ipaddress.IPv6Address, float] = {}
        self.stop = threading.Event()
        # The socket belongs to the namespace it is created in.
        self.sock = in_netns(netns, self._route_socket)
        self.sock.settimeout(0.2)

    @staticmethod
    def _route_socket() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, rtnl_bulk.NETLINK_ROUTE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.bind((0, RTMGRP_IPV6_ROUTE))
        return sock

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            now = time.perf_counter()
            for kind, _flags, _seq, start, end in rtnl_bulk.split_messages(data):
                if kind != RTM_NEWROUTE:
                    continue
                dst_len = data[start + 1]
                attrs = rtnl_bulk.parse_attrs(data, start + rtnl_bulk.RTMSG.size, end)
                if dst_len == 128 and rtnl_bulk.RTA_DST in attrs:
                    self.seen.setdefault(ipaddress.IPv6Address(attrs[rtnl_bulk.RTA_DST]), now)


class NoDelayMosquitto(Mosquitto):
    """mosquitto with `set_tcp_nodelay true`: without it Nagle holds a PUBLISH to the worker
    until the worker's TCP ACK, which Linux delays (up to 40 ms) while the worker's PUBACK
    waits for its journal write."""

    def write_config(self) -> None:
        super().write_config()
        with open(self.conf_path, "a") as fh:
            fh.write("set_tcp_nodelay true\n")


def key_seconds_summary(gw: Gateway) -> str:
    """Buckets of the worker's own histogram, read from its metrics port inside the namespace."""
    script = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9561/metrics').read().decode())"
    text = gw.ns(sys.executable, "-c", script)
    buckets, count = [], 0.0
    for line in text.splitlines():
        if line.startswith("wgmesh_worker_key_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((le, float(line.rsplit(" ", 1)[1])))
        elif line.startswith("wgmesh_worker_key_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
    if not count:
        return "no keys"
    return (
        ", ".join(f"<= {float(le) * 1000:g} ms: {n / count:.0%}" for le, n in buckets if le != "+Inf" and 0 < n < count)
        or "all in the first bucket"
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--gap-ms", type=float, default=10.0, help="pause between POSTs")
    parser.add_argument("--timeout", type=float, default=10.0, help="give up on a key after this many seconds")
    parser.add_argument(
        "--tcp-nodelay",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mosquitto's set_tcp_nodelay (default on, as the mqtt role should configure it)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    try:
        require_tools()
    except Unavailable as exc:
        print(f"missing tools: {exc}", file=sys.stderr)
        return 2
    print(f"machine: {describe()}")
    peers_ok = False
    work = Path(tempfile.mkdtemp(prefix="h6-k2p-"))
    domain = f"{PREFIX}{secrets.token_hex(3)}"
    mq = (NoDelayMosquitto if args.tcp_nodelay else Mosquitto)(workdir=work, port=free_port())
    gateways: list[Gateway] = []
    broker = publisher = None
    watchers: list[RouteWatcher] = []
    try:
        mq.start()
        publisher = Publisher(mq.port)
        for dummy in range(2):
            gw = Gateway(id=secrets.token_hex(3), workdir=work)
            gateways.append(gw)
            gw.create()
            gw.write_config(domain, PREFIX, 1883, metrics_listen="127.0.0.1:9561")  # in its own namespace
            gw.start_worker(mq.port)
        for gw in gateways:
            wait_until(lambda gw=gw: publisher.retained.get(topic_status(gw.name)) == "1", what="workers online")
        port = free_port()
        broker = BrokerProcess(
            workdir=work,
            port=port,
            config={
                "domains": [domain],
                "domain_prefixes": [PREFIX],
                "mqtt": {"broker_url": "127.0.0.1", "broker_port": mq.port, "keepalive": 5},
                "broker": {"rate_limit": {"per_client_per_minute": 0}},
                "broker_listen": {"host": "127.0.0.1", "port": port},
            },
        )
        broker.start()
        warmup = new_key()
        body = json.dumps({"domain": domain, "public_key": warmup}).encode()
        wait_until(lambda: broker.request("POST", PATH_V2_EXCHANGE, body)[0] == 200, what="broker ready")
        watchers = [RouteWatcher(gw.netns) for gw in gateways]
        for w in watchers:
            w.start()
        warm = str(derive.lladdr_from_key(warmup))
        wait_until(lambda: all(warm in gw.routes() for gw in gateways), what="warm-up key on both workers")

        keys = [new_key() for dummy in range(args.keys)]
        sent: dict[str, float] = {}
        answered: list[float] = []  # ms until the broker's 200 (it waits for mosquitto's PUBACK)
        errors = 0
        started = time.perf_counter()
        for key in keys:
            body = json.dumps({"domain": domain, "public_key": key}).encode()
            sent[key] = time.perf_counter()
            status, dummy = broker.request("POST", PATH_V2_EXCHANGE, body, {"Content-Type": "text/plain"})
            answered.append((time.perf_counter() - sent[key]) * 1000)
            errors += status != 200
            time.sleep(args.gap_ms / 1000)
        lladdr = {k: derive.lladdr_from_key(k) for k in keys}
        deadline = time.perf_counter() + args.timeout
        while time.perf_counter() < deadline and not all(lladdr[k] in w.seen for w in watchers for k in keys):
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        latencies = [
            max(w.seen[lladdr[k]] for w in watchers) - sent[k]
            for k in keys
            if all(lladdr[k] in w.seen for w in watchers)
        ]
        worker_side = [key_seconds_summary(gw) for gw in gateways]
        # the route follows the peer; check the peers themselves once at the end
        peers_ok = all(set(keys) <= set(gw.peers()) for gw in gateways)
        missing = len(keys) - len(latencies)
    finally:
        for w in watchers:
            w.stop.set()
        if broker:
            broker.stop()
        for gw in gateways:
            gw.destroy()
        if publisher:
            publisher.close()
        mq.stop()
    ms = [v * 1000 for v in latencies]
    print(f"mosquitto set_tcp_nodelay: {args.tcp_nodelay}")
    print(f"keys: {args.keys} POSTed {args.gap_ms:g} ms apart over {elapsed:.1f} s; non-200 answers: {errors}")
    print(f"on both workers: {len(latencies)}, missing after {args.timeout:g} s: {missing}")
    if ms:
        print(
            f"POST -> peer on both workers: p50 {percentile(ms, 50):.1f} ms, p90 {percentile(ms, 90):.1f} ms, "
            f"p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms, mean {statistics.mean(ms):.1f} ms"
        )
        print(f"target p99 < 100 ms: {'met' if percentile(ms, 99) < 100 else 'NOT met'}")
        print(
            f"of which the broker's answer (POST -> 200): p50 {percentile(answered, 50):.1f} ms, "
            f"p99 {percentile(answered, 99):.1f} ms, max {max(answered):.1f} ms"
        )
    for gw, summary in zip(gateways, worker_side, strict=True):
        print(f"worker {gw.name}, MQTT arrival -> kernel (wgmesh_worker_key_seconds): {summary}")
    print(f"all peers present on both interfaces at the end: {peers_ok}")
    return 0 if not missing and not errors and peers_ok else 1


if __name__ == "__main__":
    sys.exit(main())
