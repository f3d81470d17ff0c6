"""Key POST to the broker -> peer present on two workers: latency p50/p99, one by one and in storms.

    sudo .venv/bin/python bench/key_to_peer_bench.py [--keys 1000] [--gap-ms 10]
        [--storm-rates 100,200,300,500,700,1000] [--storm-seconds 3] [--backend userspace]

Everything real and local: mosquitto (persistence on) on 127.0.0.1, the broker process, two
gateways in network namespaces (wireguard-go + VXLAN) each with a worker process, as the
integration tests build them (tests/support: mosquitto.py, broker.py, gateway.py).
Keys are POSTed one after the other (v2, `--gap-ms` apart); a listener per gateway takes the
kernel's route notifications and records when each node's /128 route appears (the worker
sets the peer first, then the route). Latency = the later of the two gateways minus the moment
the POST was sent. Target: p99 < 100 ms.
Then the storm: at each of `--storm-rates` keys per second, `--storm-seconds` worth of keys are
POSTed open-loop (each at its scheduled moment, a new connection each, from a separate process:
bench/storm_client.py) and p99 key -> peer is reported per rate; the target is p99 < 50 ms at
1,000/s. The broker's rate limit is off (and loopback clients are never limited); the workers'
backend is `--backend` on wireguard-go interfaces. All printed with the results.
Bounded (`--timeout` per phase) and cleans up everything it started.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import socket
import statistics
import subprocess
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
from tests.support.procs import Unavailable, cpu_seconds, wait_until  # noqa: E402
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


def wait_seen(watchers: list[RouteWatcher], lladdrs: list[ipaddress.IPv6Address], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and not all(a in w.seen for w in watchers for a in lladdrs):
        time.sleep(0.05)


def key_to_peer_ms(watchers: list[RouteWatcher], sent: dict[str, float]) -> list[float]:
    """Per key on both workers: the later route minus the send time, in ms (keys not on both: left out)."""
    out = []
    for key, at in sent.items():
        addr = derive.lladdr_from_key(key)
        if all(addr in w.seen for w in watchers):
            out.append((max(w.seen[addr] for w in watchers) - at) * 1000)
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / hz, sum(fields) / hz


def cpu_of(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}


def run_storm(url: str, domain: str, rate: int, seconds: float, watchers, timeout: float, pids) -> dict:
    """One storm step; `pids` (name -> processes) get their CPU per key reported (what holds the curve)."""
    keys = [new_key() for dummy in range(max(1, round(rate * seconds)))]
    cpu_before, busy_before = cpu_of(pids), machine_busy()
    warm_up = [new_key() for dummy in range(5)]  # storm_client.WARM_UP, popped from the end
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE / "storm_client.py"), url, domain, str(rate), str(len(keys))],
        input="\n".join(keys + warm_up),
        capture_output=True,
        text=True,
        timeout=seconds + timeout + 60,
        check=True,
    )
    result = json.loads(proc.stdout)
    wait_seen(watchers, [derive.lladdr_from_key(k) for k in keys], timeout)
    cpu_after, busy_after = cpu_of(pids), machine_busy()
    ms = key_to_peer_ms(watchers, result["sent"])
    return {
        "cpu_ms_per_key": {n: (cpu_after[n] - cpu_before[n]) * 1000 / len(keys) for n in pids},
        "machine_busy": (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1e-9),
        "rate": rate,
        "keys": len(keys),
        "elapsed": time.perf_counter() - started,
        "non200": sum(n for code, n in result["statuses"].items() if code != "200"),
        "statuses": result["statuses"],
        "missing": len(keys) - len(ms),
        "ms": ms,
        "answer_ms": result["answer_ms"],
        "late_ms": result["late_ms"],
    }


def print_storm(rows: list[dict], backend: str) -> None:
    print(
        "\nstorm: keys POSTed open-loop at each rate (v2, a new connection per key), broker rate limit off "
        f"(per_client_per_minute 0; loopback is never limited), workers: backend {backend} on wireguard-go"
    )
    print(
        f"{'keys/s':>7} {'keys':>5} {'non-200':>7} {'missing':>7}  {'key -> peer on both workers (ms)':40}"
        f"  {'POST->200 p99':>13}  {'send slip p99':>13}  {'machine busy':>12}  CPU ms per key"
    )
    for r in rows:
        ms = r["ms"]
        cells = "none arrived"
        if ms:
            cells = f"p50 {percentile(ms, 50):7.1f}  p99 {percentile(ms, 99):7.1f}  max {max(ms):7.1f}"
        print(
            f"{r['rate']:>7} {r['keys']:>5} {r['non200']:>7} {r['missing']:>7}  {cells:40}"
            f"  {percentile(r['answer_ms'], 99):10.1f} ms  {r['late_ms']:10.1f} ms  {r['machine_busy']:12.0%}  "
            + ", ".join(f"{n} {v:.2f}" for n, v in r["cpu_ms_per_key"].items())
        )
        if r["non200"]:
            print(f"{'':>7} answers: {r['statuses']}")
    top = rows[-1]
    if top["ms"]:
        met = percentile(top["ms"], 99) < 50
        print(f"target p99 < 50 ms at {top['rate']}/s: {'met' if met else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000, help="keys POSTed one by one (0: skip that phase)")
    parser.add_argument("--gap-ms", type=float, default=10.0, help="pause between POSTs")
    parser.add_argument("--timeout", type=float, default=10.0, help="give up on a key after this many seconds")
    parser.add_argument(
        "--tcp-nodelay",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mosquitto's set_tcp_nodelay (default on, as the mqtt role should configure it)",
    )
    parser.add_argument("--storm-rates", default="100,200,300,500,700,1000", help="keys/s, rising ('' skips the storm)")
    parser.add_argument("--storm-seconds", type=float, default=3.0, help="seconds of keys at each rate")
    parser.add_argument("--backend", default="userspace", choices=["auto", "kernel", "userspace"])
    args = parser.parse_args()
    rates = [int(r) for r in args.storm_rates.split(",") if r]
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
            # metrics in its own namespace
            gw.write_config(domain, PREFIX, 1883, metrics_listen="127.0.0.1:9561", backend=args.backend)
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
        wait_seen(watchers, [derive.lladdr_from_key(k) for k in keys], args.timeout)
        elapsed = time.perf_counter() - started
        ms = key_to_peer_ms(watchers, sent)
        pids = {
            "broker": [broker.proc.pid],
            "mosquitto": [mq.proc.pid],
            "workers": [gw.worker_proc.pid for gw in gateways],  # ip netns exec execs the worker
        }
        storms = [
            run_storm(broker.url + PATH_V2_EXCHANGE, domain, rate, args.storm_seconds, watchers, args.timeout, pids)
            for rate in rates
        ]
        worker_side = [key_seconds_summary(gw) for gw in gateways]
        # the route follows the peer; check the peers themselves once at the end
        peers_ok = all(set(keys) <= set(gw.peers()) for gw in gateways)
        missing = len(keys) - len(ms) + sum(r["missing"] for r in storms)
        errors += sum(r["non200"] for r in storms)
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
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores shared with other jobs)")
    print(f"mosquitto set_tcp_nodelay: {args.tcp_nodelay}")
    print(f"keys: {args.keys} POSTed {args.gap_ms:g} ms apart over {elapsed:.1f} s; non-200 answers: {errors}")
    print(f"on both workers: {len(ms)}, missing after {args.timeout:g} s (with the storm): {missing}")
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
    if storms:
        print_storm(storms, args.backend)
    for gw, summary in zip(gateways, worker_side, strict=True):
        print(f"worker {gw.name}, MQTT arrival -> kernel (wgmesh_worker_key_seconds): {summary}")
    print(f"all peers present on both interfaces at the end: {peers_ok}")
    return 0 if not missing and not errors and peers_ok else 1


if __name__ == "__main__":
    sys.exit(main())
