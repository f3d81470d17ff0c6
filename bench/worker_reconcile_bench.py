"""Reconcile N peers from empty vs `wg addconf` of the same set, on wireguard-go, same run.

    sudo .venv/bin/python bench/worker_reconcile_bench.py [--peers 10000]

Builds a network namespace h6-bench-<id> with three like wireguard-go interfaces (address,
VXLAN device on top), then times inside it, from empty interfaces in every round:
  wg addconf          `wg addconf` of N [Peer] sections (peers only): the upstream tool's way
  ip/bridge -batch    the same N routes and FDB entries with iproute2's batch mode
  worker peers        the worker's userspace backend: the same N peers in one UAPI set
  worker reconcile    Worker.reconcile_all() from a journal of N keys: peers + routes + FDB
Target: worker peers within 1.5x of wg addconf. Cleans up everything it created.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe  # bench/machine.py: the machine line every benchmark prints

PREFIX = "t_"


def sh(*args, input=None, check=True):
    proc = subprocess.run(args, capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))}: {proc.stderr.strip()}")
    return proc.stdout


# --- the timed part, inside the namespace ------------------------------------------------
def child(args) -> None:
    from wgmesh import derive
    from wgmesh.config import parse_config
    from wgmesh.worker.daemon import Worker
    from wgmesh.worker.links import Links
    from wgmesh.worker.uapi import UapiBackend

    work = Path(args.workdir)
    keys = json.loads((work / "keys.json").read_text())
    lladdrs = [str(derive.lladdr_from_key(k)) for k in keys]
    a, b, c = args.ifaces.split(",")
    local = {a: "fe80::1", b: "fe80::2", c: "fe80::3"}  # as main() numbers the interfaces
    results = {}

    conf = work / "peers.conf"
    conf.write_text(
        "".join(f"[Peer]\nPublicKey = {k}\nAllowedIPs = {ll}/128\n\n" for k, ll in zip(keys, lladdrs, strict=True))
    )
    routes = work / "routes.batch"
    routes.write_text("".join(f"route replace {ll}/128 dev wg-{a}\n" for ll in lladdrs))
    fdb = work / "fdb.batch"
    fdb.write_text("".join(f"fdb append 00:00:00:00:00:00 dev vx-{a} dst {ll} via wg-{a}\n" for ll in lladdrs))
    journal = work / "journal.json"
    backend = UapiBackend()
    results: dict[str, list[float]] = {}

    def timed(name, fn):
        t = time.perf_counter()
        fn()
        results.setdefault(name, []).append(time.perf_counter() - t)

    def reset() -> None:  # untimed: every round starts from empty interfaces
        for name in (a, b, c):
            backend.remove_peers(f"wg-{name}", list(backend.device(f"wg-{name}").peers))
        for name in (a, b, c):  # all three alike (address, VXLAN on top), so they compare fairly
            sh("ip", "-6", "route", "flush", "dev", f"wg-{name}", "proto", "static")
            sh("ip", "link", "del", f"vx-{name}")
            sh("ip", "link", "add", f"vx-{name}", "type", "vxlan", "id", "4831583", "dstport", "8472",
               "local", local[name], "dev", f"wg-{name}")  # fmt: skip
            sh("ip", "link", "set", f"vx-{name}", "up")

    def worker_reconcile() -> Worker:
        journal.write_text(json.dumps({"version": 1, "domains": {f"{PREFIX}bench": {k: time.time() for k in keys}}}))
        cfg = parse_config(
            {
                "domains": [f"{PREFIX}bench"],
                "domain_prefixes": [PREFIX],
                "worker": {
                    "name": "h6-bench",
                    "backend": "userspace",
                    "journal": str(journal),
                    "interfaces": {f"{PREFIX}bench": {"wg": f"wg-{b}", "vx": f"vx-{b}"}},
                },
            }
        )
        worker = Worker(cfg)
        timed("worker reconcile (peers+routes+FDB)", worker.reconcile_all)
        timed("worker reconcile, nothing to do", worker.reconcile_all)
        return worker

    steps = [
        ("wg addconf (peers)", lambda: sh("wg", "addconf", f"wg-{a}", str(conf))),
        (
            "worker peers (UAPI batch)",
            lambda: backend.set_peers(f"wg-{c}", [(k, (f"{ll}/128",)) for k, ll in zip(keys, lladdrs, strict=True)]),
        ),
        ("ip/bridge -batch (routes+FDB)", lambda: (sh("ip", "-batch", str(routes)), sh("bridge", "-batch", str(fdb)))),
    ]
    for round_ in range(args.rounds):
        reset()
        for name, fn in steps if round_ % 2 == 0 else reversed(steps):  # alternate the order
            timed(name, fn)
        worker_reconcile()
        results.setdefault("wg addconf + ip/bridge -batch", []).append(
            results["wg addconf (peers)"][-1] + results["ip/bridge -batch (routes+FDB)"][-1]
        )

    links = Links()
    wi, vi = links.ifindex(f"wg-{b}"), links.ifindex(f"vx-{b}")
    want = set(derive.lladdr_from_key(k) for k in keys)
    check = {
        "peers": len(set(backend.device(f"wg-{b}").peers) & set(keys)),
        "routes": len(links.host_routes(wi) & want),
        "fdb": len(links.fdb_destinations(vi, wi) & want),
        "addconf peers": len(backend.device(f"wg-{a}").peers),
    }
    print(json.dumps({"results": results, "check": check}))


# --- setup and report, on the host ---------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=10000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--ifaces", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="repetitions; the best and median are shown")
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    if os.geteuid() != 0 or not shutil.which("wireguard-go"):
        print("needs root and wireguard-go (Debian package wireguard-go)", file=sys.stderr)
        return 2
    bid = secrets.token_hex(3)
    netns = f"h6-bench-{bid}"
    ifaces = [f"{bid}a", f"{bid}b", f"{bid}c"]
    procs = []
    work = Path(tempfile.mkdtemp(prefix="h6-bench-"))
    print(f"machine: {describe()}")
    version = sh("dpkg-query", "-W", "-f=${Version}", "wireguard-go", check=False) or "?"
    print(f"peers: {args.peers}, wireguard-go {version}")
    try:
        sh("ip", "netns", "add", netns)
        for name in ifaces:
            env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error")
            procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", netns, "wireguard-go", f"wg-{name}"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            deadline = time.monotonic() + 10
            while not Path(f"/var/run/wireguard/wg-{name}.sock").exists():
                if time.monotonic() > deadline:
                    raise SystemExit(f"wireguard-go wg-{name} did not start")
                time.sleep(0.05)
            key = work / f"{name}.key"
            key.touch(mode=0o600)
            key.write_text(sh("wg", "genkey"))
            ns = ("ip", "netns", "exec", netns)
            sh(*ns, "wg", "set", f"wg-{name}", "private-key", str(key), "listen-port", str(40000 + len(procs)))
            sh(*ns, "ip", "link", "set", f"wg-{name}", "up")
            sh(*ns, "ip", "-6", "addr", "add", f"fe80::{len(procs)}/64", "dev", f"wg-{name}", "nodad")
            sh(*ns, "ip", "link", "add", f"vx-{name}", "type", "vxlan", "id", "4831583", "dstport", "8472",
               "local", f"fe80::{len(procs)}", "dev", f"wg-{name}")  # fmt: skip
            sh(*ns, "ip", "link", "set", f"vx-{name}", "up")
        keys = [base64.b64encode(os.urandom(32)).decode() for dummy in range(args.peers)]
        (work / "keys.json").write_text(json.dumps(keys))
        out = sh(
            "ip", "netns", "exec", netns, sys.executable, os.path.abspath(__file__), "--child",
            "--workdir", str(work), "--ifaces", ",".join(ifaces), "--rounds", str(args.rounds),
        )  # fmt: skip
        report = json.loads(out.strip().splitlines()[-1])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        sh("ip", "netns", "del", netns, check=False)
        shutil.rmtree(work, ignore_errors=True)
    results = {name: (min(v), statistics.median(v)) for name, v in report["results"].items()}
    width = max(map(len, results))
    print(f"{'':<{width}}    best      median    (of {args.rounds} rounds)")
    for name, (best, median) in results.items():
        print(f"  {name:<{width}}  {best:7.3f} s  {median:7.3f} s  {args.peers / best:8.0f} /s")
    ratio = results["worker peers (UAPI batch)"][0] / results["wg addconf (peers)"][0]
    full = results["worker reconcile (peers+routes+FDB)"][0] / results["wg addconf + ip/bridge -batch"][0]
    print(f"worker peers / wg addconf: {ratio:.2f}x (target <= 1.5x)")
    print(f"worker full reconcile / (wg addconf + ip/bridge -batch): {full:.2f}x")
    print(f"applied: {report['check']}")
    ok = all(v == args.peers for v in report["check"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
