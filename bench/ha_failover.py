"""HA gateway pair failover: how long nodes stay cut off when the active member dies.

    sudo nice -n 10 .venv/bin/python bench/ha_failover.py [--nodes 200] [--runs 5] [--max-wait 150]
        [--advert 0.1] [--age-spread 60] [--kinds crash,stop] [--setups common,ours]

One run of this script measures both setups on the same pair, nodes and keepalived (2.2.7,
VRRPv3, `--advert` seconds between adverts, one VIP), interleaved so they see the same load:

  common  the well-known setup: notify MASTER brings `wg` up, BACKUP/FAULT/STOP take it down
  ours    both members hold every peer at all times and keep `wg` up; keepalived's
          notify_fifo_script `wgmesh-ha fifo` promotes on MASTER (learnt endpoints, one
          handshake per peer, from the VIP) and demotes on BACKUP/FAULT/STOP
  ours-script  (with --setups ...,ours-script) the same from notify scripts: `wgmesh-ha
          promote`/`demote`, a new process per change. The standby's endpoints file is written
          every `--sync-interval` s from the active member's peers: this bench stands in for
          the sync channel, which is not built yet (docs/ha.md)

Failures, each `--runs` times per setup: `crash` = every process of the active member
(keepalived and its children, wireguard-go) SIGKILLed and its LAN port set down right after, in
one step; `stop` = keepalived stopped cleanly (SIGTERM: it hands over with priority 0).
Nodes (bench/ha_lab.py): half ping their target through the tunnel every 0.1 s
(bench/ha_prober.py), half only send persistent keepalives (25 s); they start spread over
`--age-spread` s and runs wait a random few seconds, so sessions have different ages.

Outage of a node = from the failure until its tunnel carries traffic again: a ping node's first
reply, a keepalive-only node's first completed handshake (read from its wireguard-go).
VIP move = from the failure until the address appears on the other member. Nodes not back
within `--max-wait` s count as that long and are reported. Prints the machine, per run and
pooled per setup: VIP move, outage min/median/p99/max for each kind of node, and how many nodes
took longer than VIP move + 100 ms. Asserts nothing; removes every namespace and process it
started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine import describe  # bench/machine.py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.support, shared with the tests

from ha_lab import (  # noqa: E402
    NODE_NET,
    NODES_PER_NS,
    PRIORITY,
    RTMGRP_IPV4_IFADDR,
    VIP,
    Lab,
    netlink_socket,
    new_addresses,
    require,
    set_link,
)

from tests.support.procs import Unavailable, run, terminate, wait_until  # noqa: E402
from wgmesh.ha import endpoints  # noqa: E402
from wgmesh.ha.route import DEFAULT_FWMARK  # noqa: E402
from wgmesh.worker.errors import KernelError  # noqa: E402

HA_BIN = str(Path(sys.executable).with_name("wgmesh-ha"))
PING_INTERVAL_S = 0.1
DOMAIN = "t_bench"


class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


# --- keepalived ------------------------------------------------------------------------


NOTIFY = """#!/bin/sh
# keepalived notify for member {m}: $1 = MASTER | BACKUP | FAULT | STOP
mode=$(cat {work}/mode)
case "$mode:$1" in
  common:MASTER) ip link set {wg} up && ip route replace {node_net} dev {wg} ;;
  common:*) ip link set {wg} down ;;
  ours-script:MASTER) {ha} promote --config {work}/worker-{m}.yaml --vip {vip} --endpoints {work}/endpoints-{m}.json \
    --state-file {work}/state-{m} ;;
  ours-script:*) {ha} demote --config {work}/worker-{m}.yaml --vip {vip} --state-file {work}/state-{m} ;;
  ours:*) ;;  # wgmesh-ha fifo (notify_fifo_script) acts
esac >> {work}/notify-{m}.log 2>&1
echo "{m} $1 $mode $?" >> {work}/states
"""

KEEPALIVED_CONF = """global_defs {{
  router_id hb{m}
  script_user root
  vrrp_version 3
  # adverts every 0.1 s: a VRRP process that waits for a CPU misses three and the backup takes
  # over while the master is fine (seen here under load); realtime scheduling keeps it on time
  vrrp_rt_priority 50
  notify_fifo {work}/fifo-{m}
  notify_fifo_script {work}/fifo-script-{m}
}}
vrrp_instance VI_bench {{
  state BACKUP
  nopreempt
  interface eth0
  virtual_router_id {vrid}
  priority {priority}
  advert_int {advert}
  virtual_ipaddress {{
    {vip}/32 dev eth0
  }}
  notify_master "{work}/notify-{m} MASTER"
  notify_backup "{work}/notify-{m} BACKUP"
  notify_fault "{work}/notify-{m} FAULT"
  notify_stop "{work}/notify-{m} STOP"
}}
"""

FIFO_SCRIPT = """#!/bin/sh
# keepalived's notify_fifo_script for member {m}; keepalived gives the FIFO as $1
exec {python} {here}/ha_fifo_gate.py {work}/mode fifo --config {work}/worker-{m}.yaml --vip {vip} \
  --endpoints {work}/endpoints-{m}.json --state-file {work}/state-{m} --instance VI_bench "$1" \
  >> {work}/fifo-{m}.log 2>&1
"""


class Pair:
    """keepalived on both members, the notify scripts, the VIP watchers and the endpoint sync."""

    def __init__(self, lab: Lab, advert: float, sync_interval: float):
        self.lab = lab
        self.work = lab.work
        self.advert = advert
        self.sync_interval = sync_interval
        self.vrid = random.randint(1, 255)
        self.vip_seen: dict[str, float] = {}  # member -> monotonic time the VIP last appeared
        self.setup = "common"
        (self.work / "mode").write_text(self.setup)
        (self.work / "states").touch()
        for m, member in lab.members.items():
            worker = {
                "domains": [DOMAIN],
                "domain_prefixes": ["t_"],
                "worker": {"backend": "userspace", "interfaces": {DOMAIN: {"wg": member.ifname, "vx": "vx-none"}}},
            }
            (self.work / f"worker-{m}.yaml").write_text(json.dumps(worker))
            script = self.work / f"notify-{m}"
            script.write_text(
                NOTIFY.format(m=m, work=self.work, wg=member.ifname, node_net=NODE_NET, ha=HA_BIN, vip=VIP)
            )
            script.chmod(0o755)
            script = self.work / f"fifo-script-{m}"
            script.write_text(FIFO_SCRIPT.format(m=m, python=sys.executable, here=HERE, work=self.work, vip=VIP))
            script.chmod(0o755)
            (self.work / f"keepalived-{m}.conf").write_text(
                KEEPALIVED_CONF.format(
                    m=m, vrid=self.vrid, priority=PRIORITY[m], advert=advert, vip=VIP, work=self.work
                )
            )
            threading.Thread(target=self._watch_vip, args=(m,), daemon=True).start()
        self._stop_sync = threading.Event()
        threading.Thread(target=self._sync_endpoints, daemon=True).start()

    def start_keepalived(self, m: str) -> None:
        member = self.lab.members[m]
        for pidfile in (f"keepalived-{m}.pid", f"vrrp-{m}.pid"):  # a crashed host's /run is empty again
            (self.work / pidfile).unlink(missing_ok=True)
        log = open(self.work / f"keepalived-{m}.log", "a")  # noqa: SIM115 (the process keeps it)
        member.keepalived = subprocess.Popen(
            ["ip", "netns", "exec", member.netns, "keepalived", "--dont-fork", "--log-console", "--vrrp",
             "--no-syslog", "--use-file", str(self.work / f"keepalived-{m}.conf"),
             "--pid", str(self.work / f"keepalived-{m}.pid"), "--vrrp_pid", str(self.work / f"vrrp-{m}.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.lab.procs.append(member.keepalived)

    def states(self) -> list[str]:
        return (self.work / "states").read_text().splitlines()

    def wait_state(self, m: str, state: str, after: int) -> None:
        wait_until(
            lambda: any(line.startswith(f"{m} {state} ") for line in self.states()[after:]),
            60,
            0.05,
            what=f"member {m} in state {state}",
        )

    def member_pids(self, m: str) -> list[int]:
        """Every process of member m, children before parents: keepalived's VRRP child has
        parent-death signal SIGTERM, and on SIGTERM it hands over cleanly (priority 0), which a
        crashed host does not."""
        member = self.lab.members[m]
        pids = [member.wg_proc.pid, member.keepalived.pid]
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        todo = [member.keepalived.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                pids.append(child)
                todo.append(child)
        return pids[::-1]  # descendants (deepest last found) first, keepalived, then wireguard-go

    def set_setup(self, setup: str) -> None:
        """Switch between the common setup and ours on the running pair. The active member keeps
        (or gets) the source route in both: sessions it started under ours are rekeyed by it,
        and from its own address they would move the nodes' endpoints off the VIP for good."""
        self.setup = setup
        (self.work / "mode").write_text(setup)
        holder = self.lab.holder()
        for m, member in self.lab.members.items():
            action = "install" if m == holder else "remove"
            run("ip", "netns", "exec", member.netns, HA_BIN, "route", action, "--vip", VIP)
            if m == holder:
                run("ip", "netns", "exec", member.netns, "wg", "set", member.ifname, "fwmark", str(DEFAULT_FWMARK))
            self.lab.member_link(m, setup.startswith("ours") or m == holder)

    def _watch_vip(self, m: str) -> None:
        sock = netlink_socket(self.lab.members[m].netns, RTMGRP_IPV4_IFADDR)
        for address in new_addresses(sock):
            if address == VIP:
                self.vip_seen[m] = time.monotonic()

    def _sync_endpoints(self) -> None:
        """Stands in for the sync channel: the active member's endpoints, for the standby."""
        while not self._stop_sync.wait(self.sync_interval):
            holder = self.lab.holder()
            if holder is None:
                continue
            partner = "b" if holder == "a" else "a"
            try:
                peers = self.lab.member_device(holder).peers
            except KernelError:  # the active member is being crashed: next round
                continue
            learnt = {k: p.endpoint for k, p in peers.items() if p.endpoint}
            endpoints.save(str(self.work / f"endpoints-{partner}.json"), {DOMAIN: learnt})

    def close(self) -> None:
        self._stop_sync.set()


# --- nodes' view -------------------------------------------------------------------------


class Probers:
    """One bench/ha_prober.py per node namespace, for its ping nodes."""

    def __init__(self, lab: Lab):
        self.procs: list[subprocess.Popen] = []
        by_ns: dict[str, list[str]] = {}
        for node in lab.nodes:
            if node.sends_data:
                by_ns.setdefault(node.netns, []).append(f"{node.index}:{node.target}")
        for netns, specs in by_ns.items():
            proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    netns,
                    sys.executable,
                    str(HERE / "ha_prober.py"),
                    str(PING_INTERVAL_S),
                    *specs,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            lab.procs.append(proc)
            self.procs.append(proc)
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"prober in {netns} did not start")

    def first_replies(self, since: float) -> dict[int, float | None]:
        out: dict[int, float | None] = {}
        for proc in self.procs:
            proc.stdin.write(f"since {since}\n")
            proc.stdin.flush()
        for proc in self.procs:
            out.update({int(k): v for k, v in json.loads(proc.stdout.readline()).items()})
        return out

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.stdin.write("quit\n")
                    proc.stdin.flush()
                except OSError:
                    pass
            terminate(proc, timeout=5)


def node_outages(lab: Lab, probers: Probers, t0: float, wall0: float, deadline: float, vip_at) -> dict[int, float]:
    """Seconds from the failure until each node carries traffic again (absent: not by the deadline).
    A ping node counts from its first reply after the VIP reached the partner: after a clean
    stop the old member still answers for the few ms until it lets the address go."""
    back: dict[int, float] = {}
    idle = [n for n in lab.nodes if not n.sends_data]
    while True:
        moved = vip_at()
        for index, at in (probers.first_replies(moved) if moved else {}).items():
            if at is not None:
                back[index] = at - t0
        for node in idle:
            if node.index not in back:
                handshake = lab.node_handshake(node)
                if handshake > wall0:
                    back[node.index] = handshake - wall0
        if len(back) == len(lab.nodes) or time.monotonic() > deadline:
            return back
        time.sleep(0.5)


# --- one failure ------------------------------------------------------------------------


def fail(lab: Lab, pair: Pair, probers: Probers, kind: str, max_wait: float) -> dict:
    holder = lab.holder()
    if holder is None:
        raise RuntimeError("no member holds the VIP")
    partner = "b" if holder == "a" else "a"
    ages = [time.time() - p.last_handshake for p in lab.member_device(holder).peers.values() if p.last_handshake > 0]
    pids = pair.member_pids(holder) if kind == "crash" else []
    member = lab.members[holder]
    port_index = lab.lan_port_index(member.netns)
    states_before = len(pair.states())
    lan = netlink_socket(lab.lan)
    t0, wall0 = time.monotonic(), time.time()
    if kind == "crash":  # the link first: nothing the dying processes send gets out
        set_link(lan, port_index, up=False)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    else:
        member.keepalived.terminate()
    lan.close()
    back = node_outages(
        lab,
        probers,
        t0,
        wall0,
        t0 + max_wait,
        lambda: pair.vip_seen.get(partner) if pair.vip_seen.get(partner, 0) > t0 else None,
    )
    for node in [n for n in lab.nodes if n.index not in back][:2]:  # why, in the words of `wg`
        print(f"    not back: node {node.index} ({'ping' if node.sends_data else 'keepalive-only'}):")
        print("     ", run("wg", "show", node.ifname, "dump", check=False).stdout.replace("\n", "\n      "))
        for m in lab.members.values():
            dump = run("wg", "show", m.ifname, "dump", check=False).stdout
            print(f"      {m.name}:", *[line for line in dump.splitlines() if line.startswith(node.public_key)])
    vip_move = pair.vip_seen.get(partner, 0) - t0
    flaps = sum(1 for line in pair.states()[states_before:] if " MASTER " in line) - 1
    result = {
        "flaps": flaps,
        "setup": pair.setup,
        "kind": kind,
        "vip_move": vip_move if vip_move > 0 else None,
        "data": [back.get(n.index, max_wait) for n in lab.nodes if n.sends_data],
        "idle": [back.get(n.index, max_wait) for n in lab.nodes if not n.sends_data],
        "missing": len(lab.nodes) - len(back),
        "ages": ages,
    }
    restore(lab, pair, holder, kind, states_before)
    return result


def restore(lab: Lab, pair: Pair, m: str, kind: str, states_before: int) -> None:
    """Bring the failed member back as the standby (nopreempt keeps it there)."""
    member = lab.members[m]
    if kind == "crash":
        for proc in (member.wg_proc, member.keepalived):
            proc.wait()
        (Path("/var/run/wireguard") / f"{member.ifname}.sock").unlink(missing_ok=True)
        lan = netlink_socket(lab.lan)
        set_link(lan, lab.lan_port_index(member.netns), up=True)
        lan.close()
        lab.start_member_wg(m, up=pair.setup.startswith("ours"))
    else:
        member.keepalived.wait()
    mark = len(pair.states())
    pair.start_keepalived(m)
    pair.wait_state(m, "BACKUP", max(mark, states_before))


# --- figures ------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):6.2f} {statistics.median(values):6.2f} {pct(values, 0.99):6.2f} {max(values):6.2f}"


def late(result: dict) -> int:
    if result["vip_move"] is None:
        return len(result["data"]) + len(result["idle"])
    limit = result["vip_move"] + 0.1
    return sum(1 for v in result["data"] + result["idle"] if v > limit)


def report(results: list[dict], nodes: int) -> None:
    print()
    print("outage per node in seconds: min median p99 max; late = nodes back later than VIP move + 0.1 s;")
    print("missing = not back within --max-wait (counted as that); flaps = extra MASTER transitions while")
    print("the nodes recovered; reset = nodes that had not reconnected since the last failure and were reset")
    print("before this one (their gateway peer removed and added back, as on a reboot)")
    head = f"{'setup':7} {'failure':7} {'run':>3} {'VIP move':>8}  {'ping nodes':^27}  {'keepalive-only nodes':^27}"
    print(head + f"  {'late':>5} {'missing':>7} {'flaps':>5} {'reset':>5}  session ages min/median/max")
    for r in results:
        vip = f"{r['vip_move']:8.3f}" if r["vip_move"] is not None else "       -"
        ages = f"{min(r['ages']):.0f}/{statistics.median(r['ages']):.0f}/{max(r['ages']):.0f} s" if r["ages"] else "-"
        print(
            f"{r['setup']:7} {r['kind']:7} {r['run']:>3} {vip}  {spread(r['data'])}  {spread(r['idle'])}"
            f"  {late(r):>5} {r['missing']:>7} {r['flaps']:>5} {r['unready']:>5}  {ages}"
        )
    print()
    print(f"pooled over runs ({nodes} nodes per run):")
    for setup in dict.fromkeys(r["setup"] for r in results):
        for kind in dict.fromkeys(r["kind"] for r in results):
            rs = [r for r in results if r["setup"] == setup and r["kind"] == kind]
            if not rs:
                continue
            vips = [r["vip_move"] for r in rs if r["vip_move"] is not None]
            data = [v for r in rs for v in r["data"]]
            idle = [v for r in rs for v in r["idle"]]
            vip_text = f"{min(vips):.3f}-{max(vips):.3f} (median {statistics.median(vips):.3f})" if vips else "-"
            print(f"  {setup:7} {kind:6} VIP move {vip_text} s over {len(rs)} runs")
            print(f"      ping nodes           {spread(data)}")
            print(f"      keepalive-only nodes {spread(idle)}")
            print(f"      all nodes            {spread(data + idle)}; late {sum(late(r) for r in rs)},"
                  f" missing {sum(r['missing'] for r in rs)} of {len(data) + len(idle)}")  # fmt: skip


# --- main ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5, help="failures per setup and kind")
    parser.add_argument("--kinds", default="crash,stop")
    parser.add_argument("--setups", default="common,ours")
    parser.add_argument("--max-wait", type=float, default=150.0, help="seconds to wait for every node")
    parser.add_argument("--advert", type=float, default=0.1, help="VRRP advert interval (s)")
    parser.add_argument("--age-spread", type=float, default=60.0, help="nodes start spread over this (s)")
    parser.add_argument("--sync-interval", type=float, default=1.0, help="endpoint sync period (s)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = parser.parse_args()
    try:
        require()
    except Unavailable as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 0
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    inotify = Path("/proc/sys/fs/inotify/max_user_instances")
    inotify_before = int(inotify.read_text())
    if inotify_before < args.nodes + 512:
        # each wireguard-go takes an inotify instance for its UAPI socket; at the default 128 the
        # 127th fails with "too many open files". Host-wide: put back at the end.
        inotify.write_text(str(args.nodes + 512))
        print(f"fs.inotify.max_user_instances {inotify_before} -> {args.nodes + 512} for this run")
    work = Path(tempfile.mkdtemp(prefix="wgmesh-ha-bench-"))
    lab = Lab(work, args.nodes)
    pair = probers = None
    keepalived = run("keepalived", "--version", check=False).stderr.splitlines()[0]
    print(f"machine: {describe(keepalived)}; nproc {os.cpu_count()}")
    started = time.monotonic()
    try:
        lab.build_lan()
        lab.build_members()
        pair = Pair(lab, args.advert, args.sync_interval)
        pair.start_keepalived("a")
        pair.wait_state("a", "MASTER", 0)
        pair.start_keepalived("b")
        pair.wait_state("b", "BACKUP", 0)
        namespaces = sorted({n.netns for n in lab.nodes}, key=lambda ns: int(ns[2:].split("-")[0]))
        for k, netns in enumerate(namespaces):
            lab.start_nodes([n for n in lab.nodes if n.netns == netns])
            print(f"  nodes up: {min(len(lab.nodes), (k + 1) * NODES_PER_NS)} of {len(lab.nodes)}", flush=True)
            if k + 1 < len(namespaces):
                time.sleep(args.age_spread / max(1, len(namespaces) - 1))
        probers = Probers(lab)
        print(f"setup took {time.monotonic() - started:.0f} s; load {os.getloadavg()[0]:.1f}", flush=True)
        results = []
        last_failure = 0.0
        for kind in args.kinds.split(","):
            for run_no in range(1, args.runs + 1):
                for setup in args.setups.split(","):
                    pair.set_setup(setup)
                    unready = settle(lab, last_failure)
                    time.sleep(random.uniform(2, 10))  # sessions of different ages
                    last_failure = time.time()
                    result = fail(lab, pair, probers, kind, args.max_wait)
                    result["run"] = run_no
                    result["unready"] = unready
                    results.append(result)
                    print(
                        f"  {setup} {kind} {run_no}: VIP {result['vip_move']}, late {late(result)},"
                        f" worst {max(result['data'] + result['idle']):.2f} s",
                        flush=True,
                    )
        report(results, len(lab.nodes))
        print(f"\nmachine at the end: load {' '.join(f'{v:.1f}' for v in os.getloadavg())}; "
              f"took {time.monotonic() - started:.0f} s")  # fmt: skip
    except Interrupted as exc:
        print(f"interrupted ({exc}); cleaning up", file=sys.stderr)
        return 130
    finally:
        if probers:
            probers.close()
        if pair:
            pair.close()
        lab.close()
        if int(inotify.read_text()) == args.nodes + 512 and inotify_before < args.nodes + 512:
            inotify.write_text(str(inotify_before))
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def settle(lab: Lab, since_wall: float, patience: float = 10.0) -> int:
    """Until every node has a session with the active member made after the last failure. A
    node still without one after `patience` s (a keepalive-only node of the common setup can
    take minutes) is reset as a rebooting node would be: its gateway peer removed and added
    back, so it starts a handshake. Without this, the next run would measure nodes that the new
    member cannot know endpoints for. Returns how many nodes had to be reset."""
    deadline = time.monotonic() + patience
    reset = 0
    while True:
        holder = lab.holder()
        peers = lab.member_device(holder).peers if holder else {}
        behind = [n for n in lab.nodes if n.public_key not in peers or peers[n.public_key].last_handshake <= since_wall]
        if not behind:
            return reset
        if time.monotonic() > deadline:
            for node in behind:
                lab.reset_node(node)
            reset += len(behind)
            deadline = time.monotonic() + patience
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
