"""Broker throughput and latency side by side: ours, upstream wgkex, and a bare aiohttp ceiling.

All servers run in one run against the same mosquitto on loopback with two
workers' retained state, cells interleaved so they see the same background load:

- ours: `python -m wgmesh.broker` (QoS 1, 200 only after mosquitto's PUBACK);
- upstream: freifunkMUC's wgkex broker (Flask + flask-mqtt on waitress), from the
  source tree in $WGKEX_SRC, run by $WGKEX_PYTHON (a venv with its requirements.txt;
  default: this interpreter); skipped with a note when $WGKEX_SRC is unset;
- bare: bench/broker_bare_aiohttp.py, one aiohttp process on the default loop that
  parses the same body and answers the same JSON without MQTT: the ceiling of our stack;
- flask-waitress (only with --servers): our handler on upstream's stack;
- before: with --before-src DIR, our broker from another checkout's src/ (e.g. `git archive`
  of the commit before a change), for a before/after in the same run.

Every request carries a fresh random key and opens a new TCP connection
(`Connection: close`), like busybox wget on a Gluon node. The load generator is
`wrk` (Debian package wrk) with a Lua script, or an aiohttp client in this process
when wrk is missing. Each cell is run --rounds times; the median round is reported
with the range. The machine is shared: nproc and the load average at start and end
are printed with the figures. Bounded by --duration per cell.

    WGKEX_SRC=/path/to/wgkex WGKEX_PYTHON=/path/to/venv/bin/python \
    .venv/bin/python bench/broker_bench.py [--duration 5] [--rounds 3] [--versions v2] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import paho.mqtt.client as paho
from machine import describe  # bench/machine.py: the machine line every benchmark prints
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support, shared with the tests

from tests.support.keys import new_key  # noqa: E402
from tests.support.net import free_port, wait_for_port  # noqa: E402
from tests.support.procs import cpu_seconds  # noqa: E402
from wgmesh.protocol import PATH_V1_EXCHANGE, PATH_V2_EXCHANGE  # noqa: E402

GW_KEY = "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg="
PATHS = {"v1": PATH_V1_EXCHANGE, "v2": PATH_V2_EXCHANGE}
START_TRIES = 8

# wrk: a fresh valid key per request, wget-like headers, a JSON summary at the end.
WRK_LUA = r"""
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local last = "AEIMQUYcgkosw480"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local headers = {["Connection"] = "close", ["Content-Type"] = "application/x-www-form-urlencoded"}
request = function()
  local t = {}
  for i = 1, 42 do local r = math.random(1, 64); t[i] = chars:sub(r, r) end
  local r = math.random(1, 16); t[43] = last:sub(r, r); t[44] = "="
  return wrk.format("POST", nil, headers, '{"domain":"ffmuc_welt","public_key":"' .. table.concat(t) .. '"}')
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def machine() -> str:
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False).stdout.splitlines()[:1]
    return describe(f"aiohttp {aiohttp.__version__}", mosq[0] if mosq else "mosquitto ?")


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false", "max_queued_messages 0"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port, timeout=15, proc=proc)
    return proc, port


def publish_workers(port: int, domain: str) -> None:
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for i, peers in ((1, 20), (2, 19)):
        w = f"gw{i}"
        data = {"ExternalAddress": f"{w}.example.net", "Port": 40000 + i, "PublicKey": GW_KEY, "LinkAddress": "fe80::1"}
        for topic, payload in (
            (f"wireguard-worker/{w}/status", "1"),
            (f"wireguard-metrics/{domain}/{w}/connected_peers", str(peers)),
            (f"wireguard-worker/{w}/{domain}/data", json.dumps(data)),
        ):
            client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def write_config(workdir: Path, mqtt_port: int, http_port: int, name: str) -> Path:
    """Our config; upstream reads the same keys (it needs mqtt.username/password present)."""
    import yaml

    cfg = {
        "domains": ["ffmuc_welt"],
        "domain_prefixes": ["ffmuc_"],
        "mqtt": {"broker_url": "127.0.0.1", "broker_port": mqtt_port},
        "broker_listen": {"host": "127.0.0.1", "port": http_port},
    }
    if name == "upstream":
        cfg["mqtt"] |= {"username": None, "password": None}
    else:
        cfg["broker"] = {"rate_limit": {"per_client_per_minute": 0}, "publish_timeout": 5.0}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def server_command(kind: str, config: Path, port: int) -> tuple[list[str], dict[str, str], str | None]:
    """argv, environment and working directory of one server."""
    env = dict(os.environ)
    if kind == "ours":
        return [sys.executable, "-m", "wgmesh.broker", "--config", str(config)], env, None
    if kind == "bare":
        return [sys.executable, str(ROOT / "bench" / "broker_bare_aiohttp.py"), "--port", str(port)], env, None
    if kind == "upstream":
        src = os.environ["WGKEX_SRC"]
        env |= {"WGKEX_CONFIG_FILE": str(config), "PYTHONPATH": src}
        return [os.environ.get("WGKEX_PYTHON", sys.executable), "-m", "wgkex.broker.app"], env, src
    if kind == "before":
        env["PYTHONPATH"] = os.environ["WGMESH_BEFORE_SRC"]
        return [sys.executable, "-m", "wgmesh.broker", "--config", str(config)], env, None
    if kind == "flask-waitress":
        return [sys.executable, str(ROOT / "bench" / "broker_baseline_flask.py"), "--config", str(config)], env, None
    raise ValueError(f"unknown server {kind!r} (known: ours, upstream, bare, flask-waitress)")


def start_server(kind: str, config: Path, port: int, workdir: Path) -> subprocess.Popen:
    args, env, cwd = server_command(kind, config, port)
    log = open(workdir / f"{kind}.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    wait_for_port("127.0.0.1", port, timeout=15, proc=proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process had (its children not counted)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_cell_wrk(url: str, concurrency: int, duration: float, script: Path) -> dict:
    proc = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--timeout", "30s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary: {proc.stdout}{proc.stderr}")
    r = json.loads(line[len("WRKJSON ") :])
    bad = r["non2xx"] + r["socket_errors"]
    return {
        "requests": r["requests"],
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "statuses": {"2xx": r["requests"] - r["non2xx"], "non-2xx/errors": bad} if bad else {"2xx": r["requests"]},
    }


async def run_cell(url: str, concurrency: int, duration: float, max_requests: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent = 0
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
    timeout = aiohttp.ClientTimeout(total=30)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout, skip_auto_headers=["Content-Type"]) as s:

        async def one_client():
            nonlocal sent
            while time.monotonic() < deadline and sent < max_requests:
                sent += 1
                key = new_key()
                body = json.dumps({"domain": "ffmuc_welt", "public_key": key})
                t0 = time.perf_counter()
                try:
                    async with s.post(url, data=body) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _client in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "statuses": statuses,
    }


def warmed_up(url: str, within: float) -> bool:
    """A round of requests all answered 200 within `within` s: MQTT connected, worker state read."""
    deadline = time.monotonic() + within
    while True:
        warm = asyncio.run(run_cell(url, 2, 0.5, 100))
        if set(warm["statuses"]) == {200}:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def available_servers(wanted: list[str]) -> list[str]:
    servers = []
    for server in wanted:
        if server == "before" and not os.environ.get("WGMESH_BEFORE_SRC"):
            continue
        if server == "upstream" and not os.environ.get("WGKEX_SRC"):
            print("upstream skipped: set WGKEX_SRC to a wgkex source tree (and WGKEX_PYTHON)", file=sys.stderr)
            continue
        if server == "flask-waitress":
            try:
                import flask  # noqa: F401
                import waitress  # noqa: F401
            except ImportError:
                print("flask-waitress skipped: pip install flask waitress into the venv", file=sys.stderr)
                continue
        servers.append(server)
    return servers


def median_round(rounds: list[dict]) -> dict:
    ordered = sorted(rounds, key=lambda r: r["rps"])
    r = dict(ordered[len(ordered) // 2])
    r["rps_range"] = (ordered[0]["rps"], ordered[-1]["rps"])
    r["p99_range"] = (min(x["p99_ms"] for x in rounds), max(x["p99_ms"] for x in rounds))
    return r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell (default 5)")
    parser.add_argument("--max-requests", type=int, default=50_000, help="cap per cell (aiohttp client only)")
    parser.add_argument("--concurrency", default="64")
    parser.add_argument("--versions", default="v2", help="v1, v2 or both (default v2, what nodes use)")
    parser.add_argument("--servers", default="ours,upstream,bare")
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell; the median is reported")
    parser.add_argument("--client", choices=["auto", "aiohttp"], default="auto", help="auto: wrk if installed")
    parser.add_argument("--before-src", help="also run the broker from this src/ directory, as 'before'")
    args = parser.parse_args()
    if args.before_src:
        os.environ["WGMESH_BEFORE_SRC"] = str(Path(args.before_src).resolve())
        args.servers = args.servers.replace("ours", "ours,before", 1)
    levels = [int(c) for c in args.concurrency.split(",")]
    versions = args.versions.split(",")
    if shutil.which("mosquitto") is None:
        print("mosquitto not installed; nothing to measure", file=sys.stderr)
        return 1
    servers = available_servers(args.servers.split(","))
    use_wrk = shutil.which("wrk") is not None and args.client != "aiohttp"
    print(f"machine: {machine()}")
    print(f"nproc {os.cpu_count()}; load average at start: {load_average()} (a shared machine: other jobs run)")
    client = "wrk -t1 (C, Lua script)" if use_wrk else "aiohttp in this process"
    print(f"client: {client}; new TCP connection per request; {args.duration:g}s per cell, median of {args.rounds}")
    procs: list[subprocess.Popen] = []
    peak_rss: dict[str, float] = {}
    results: dict[tuple[str, str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="h5-bench-") as tmp:
        workdir = Path(tmp)
        script = workdir / "keys.lua"
        script.write_text(WRK_LUA)
        try:
            mosq, mqtt_port = start_mosquitto(workdir)
            procs.append(mosq)
            publish_workers(mqtt_port, "ffmuc_welt")
            bases, pids = {}, {}
            for server in servers:
                http_port = free_port()
                config = write_config(workdir, mqtt_port, http_port, server)
                # Upstream subscribes in an on_connect handler registered after its client already
                # connected: when the CONNACK wins that race it never subscribes and answers 400
                # "no gateway online" until restarted (docs/broker.md, "MQTT"). Start it again then.
                for starts in range(1, START_TRIES + 1):  # noqa: B007 - reported after the loop
                    proc = start_server(server, config, http_port, workdir)
                    procs.append(proc)
                    bases[server], pids[server] = f"http://127.0.0.1:{http_port}", proc.pid
                    if all(warmed_up(bases[server] + PATHS[v], 10.0) for v in versions):
                        break
                    stop(proc)
                else:
                    raise RuntimeError(f"{server} never answered 200 in {START_TRIES} starts (log: {server}.log)")
                if starts > 1:
                    print(f"{server}: answered 200 after {starts} starts (its subscribe race)")
            for version in versions:
                for c in levels:
                    for _round in range(args.rounds):
                        for server in servers:  # interleaved: all see the same background load
                            url = bases[server] + PATHS[version]
                            cpu_before = cpu_seconds(pids[server])
                            if use_wrk:
                                r = run_cell_wrk(url, c, args.duration, script)
                            else:
                                r = asyncio.run(run_cell(url, c, args.duration, args.max_requests))
                            r["cpu_ms"] = (cpu_seconds(pids[server]) - cpu_before) * 1000 / max(r["requests"], 1)
                            results.setdefault((server, version, c), []).append(r)
            peak_rss = {server: peak_rss_mb(pids[server]) for server in servers}
        finally:
            for proc in procs:
                stop(proc)
    print(f"load average at end: {load_average()}")
    for version in versions:
        for c in levels:
            table = {server: median_round(results[(server, version, c)]) for server in servers}
            for server, r in table.items():
                codes = ",".join(f"{k}:{v}" for k, v in r["statuses"].items())
                low, high = r["rps_range"]
                print(
                    f"{server:15} {version} c={c:<3} {r['rps']:7.0f} req/s ({low:.0f}-{high:.0f})"
                    f"  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms"
                    f" ({r['p99_range'][0]:.1f}-{r['p99_range'][1]:.1f})"
                    f"  server CPU {r['cpu_ms']:.2f} ms/req  peak RSS {peak_rss.get(server, 0):.0f} MB"
                    f"  n={r['requests']} {codes}",
                    flush=True,
                )
            if "ours" in table:
                ours = table["ours"]["rps"]
                ratios = [f"{ours / table[s]['rps']:.2f}x {s}" for s in servers if s != "ours"]
                print(f"  ours = {', '.join(ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
