"""Benchmark freifunk.wgmesh.wg_peers with many peers on a wireguard-go interface.

Runs, in one go and on the same machine:
  * the naive way: one `wg set <if> peer K allowed-ips A` process per peer (first apply);
  * one `wg set` with every peer in its argument list (the other batch form we considered);
  * the module as a process (what AnsiballZ runs on the target): first apply, idempotent
    second run, one peer changed;
  * the same three through real ansible-playbook (connection local, inside the namespace),
    with the task's own duration from a small callback, next to ansible.builtin.ping given
    the same peer list (what Ansible itself costs to ship that much data to a module).

Targets (issue "Collection foundation"): idempotent run < 2 s, first apply >= 20x faster
than the per-peer loop. Creates namespace h2-* and a wireguard-go interface, and removes
both when it ends (also on Ctrl-C / SIGTERM). Needs root, wireguard-go and wireguard-tools.

    .venv/bin/python bench/wg_peers_bench.py [--peers 10000] [--no-playbook] [--no-naive]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # bench/machine.py: the machine line every benchmark prints

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = REPO / ".build" / "collections"
sys.path.insert(0, str(REPO))  # tests.support, shared with the tests

from tests.support.procs import run  # noqa: E402
from tests.support.wgnetns import Unavailable, WgNetns  # noqa: E402

TIMER_CALLBACK = """
import json, os, time
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "h2_task_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.started, self.times = {}, {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.started[task._uuid] = (task.get_name(), time.monotonic())

    def _done(self, result):
        name, started = self.started[result._task._uuid]
        self.times[name] = time.monotonic() - started

    v2_runner_on_ok = v2_runner_on_failed = _done

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["H2_TIMES_FILE"], "w") as handle:
            json.dump(self.times, handle)
"""

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: wg_peers
      freifunk.wgmesh.wg_peers:
        interface: "{{ ifname }}"
        peers: "{{ peers }}"
        exclusive: true
      register: result
    - name: save
      ansible.builtin.copy:
        content: "{{ result | to_json }}"
        dest: "{{ result_file }}"
        mode: "0600"
"""

PING_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: ping
      ansible.builtin.ping:
        data: "{{ peers }}"
"""


def interrupted(_signum, _frame):
    raise KeyboardInterrupt


def machine():
    wggo = run("wireguard-go", "--version", check=False).stdout.splitlines()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "wireguard-go": wggo[0] if wggo else "?",
        "wg": run("wg", "--version", check=False).stdout.split(" - ")[0].strip(),
        "python": platform.python_version(),
        "load average at start": " ".join("%.2f" % value for value in os.getloadavg()),
    }


def make_peers(count):
    peers = []
    for index in range(count):
        key = base64.b64encode(os.urandom(32)).decode()
        peers.append({"public_key": key, "allowed_ips": ["fe80::2:%x:%x/128" % (index >> 16, index & 0xFFFF)]})
    return peers


def clear(iface):
    keys = iface.wg("show", iface.ifname, "peers").split()
    for start in range(0, len(keys), 5000):
        argv = ["wg", "set", iface.ifname]
        for key in keys[start : start + 5000]:
            argv += ["peer", key, "remove"]
        run(*argv)
    assert iface.wg("show", iface.ifname, "peers").strip() == ""


def peer_count(iface):
    return len(iface.wg("show", iface.ifname, "peers").split())


def cpu_of(pid):
    """User+system CPU seconds a process has used so far (from /proc)."""
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Timer:
    """Wall time plus CPU time, since wall time alone is noisy on a shared 2-core machine.

    ``cpu`` counts our child processes (wg, the module, ansible-playbook and its workers);
    ``daemon`` the CPU wireguard-go spent meanwhile. With ``repeat`` > 1 the fastest run is
    kept (``prepare`` runs untimed before each one).
    """

    def __init__(self, iface):
        self.daemon_pid = iface.process.pid

    def __call__(self, func, repeat=1, prepare=None):
        best = None
        for _attempt in range(repeat):
            if prepare:
                prepare()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            daemon = cpu_of(self.daemon_pid)
            started = time.monotonic()
            value = func()
            wall = time.monotonic() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
            figures = {"wall": wall, "cpu": cpu, "daemon": cpu_of(self.daemon_pid) - daemon}
            if best is None or wall < best[0]["wall"]:
                best = (figures, value)
        return best


def naive_loop(iface, peers):
    for peer in peers:
        run("wg", "set", iface.ifname, "peer", peer["public_key"], "allowed-ips", ",".join(peer["allowed_ips"]))


def one_wg_set(iface, peers):
    argv = ["wg", "set", iface.ifname]
    for peer in peers:
        argv += ["peer", peer["public_key"], "allowed-ips", ",".join(peer["allowed_ips"])]
    run(*argv)


def one_wg_addconf(iface, peers):
    text = "".join(
        "[Peer]\nPublicKey = %s\nAllowedIPs = %s\n" % (p["public_key"], ",".join(p["allowed_ips"])) for p in peers
    )
    run("wg", "addconf", iface.ifname, "/dev/stdin", input=text)


def module_process(iface, peers, workdir):
    """Run the module as its own process, as AnsiballZ does on a target."""
    args = workdir / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"interface": iface.ifname, "peers": peers, "exclusive": True}}))
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    proc = subprocess.run(
        [sys.executable, "-m", "ansible_collections.freifunk.wgmesh.plugins.modules.wg_peers", str(args)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    result = json.loads(proc.stdout)
    if result.get("failed"):
        raise RuntimeError("module failed: %s" % result.get("msg"))
    return result


class PlaybookRunner:
    def __init__(self, iface, workdir):
        self.iface = iface
        self.workdir = workdir
        (workdir / "callbacks").mkdir()
        (workdir / "callbacks" / "h2_task_timer.py").write_text(TIMER_CALLBACK)
        (workdir / "peers.yml").write_text(PLAYBOOK)
        (workdir / "ping.yml").write_text(PING_PLAYBOOK)
        self.env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_CALLBACK_PLUGINS=str(workdir / "callbacks"),
            ANSIBLE_CALLBACKS_ENABLED="h2_task_timer",
            H2_TIMES_FILE=str(workdir / "times.json"),
        )

    def __call__(self, playbook, task, peers):
        """Return (whole ansible-playbook wall time, the task's own time, registered result)."""
        variables = self.workdir / "vars.json"
        result_file = self.workdir / "result.json"
        result_file.unlink(missing_ok=True)
        variables.write_text(
            json.dumps(
                {
                    "ifname": self.iface.ifname,
                    "peers": peers,
                    "result_file": str(result_file),
                    "ansible_python_interpreter": sys.executable,
                }
            )
        )
        ansible_playbook = str(Path(sys.executable).with_name("ansible-playbook"))
        argv = ["ip", "netns", "exec", self.iface.netns, ansible_playbook, "-i", "localhost,", "-c", "local"]
        argv += [str(self.workdir / playbook), "-e", "@%s" % variables]
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=self.env, check=False)
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError("ansible-playbook failed:\n%s" % proc.stdout[-2000:])
        times = json.loads((self.workdir / "times.json").read_text())
        result = json.loads(result_file.read_text()) if result_file.exists() else None
        return wall, times[task], result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--peers", type=int, default=10000)
    parser.add_argument("--no-playbook", action="store_true", help="skip the ansible-playbook runs")
    parser.add_argument("--no-naive", action="store_true", help="skip the one-process-per-peer loop")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each batch/module figure; the fastest is kept")
    options = parser.parse_args()
    if not (COLLECTIONS / "ansible_collections" / "freifunk" / "wgmesh").is_dir():
        sys.exit("run `make collection` first (links this checkout into .build/collections)")

    # SIGTERM ends the run through the same cleanup as Ctrl-C.
    signal.signal(signal.SIGTERM, interrupted)
    info = machine()
    rows = []  # (what, seconds, note)
    workdir = Path(tempfile.mkdtemp(prefix="h2-bench-"))
    iface = WgNetns(prefix="h2")
    try:
        iface.start(workdir)
    except Unavailable as exc:
        sys.exit("cannot run: %s" % exc)
    try:
        iface.set_identity(iface.wg("genkey"), 51820, workdir)
        run("ip", "-n", iface.netns, "link", "set", iface.ifname, "up")  # as on a gateway
        peers = make_peers(options.peers)
        changed_one = [dict(peer) for peer in peers]
        changed_one[len(peers) // 2] = dict(changed_one[len(peers) // 2], allowed_ips=["10.99.0.1/32"])
        n = len(peers)

        timer = Timer(iface)
        repeat = options.repeat

        def row(what, figures, note=""):
            rows.append((what, figures["wall"], figures["cpu"], figures["daemon"], note))

        naive = None
        if not options.no_naive:
            print("naive loop: %d wg set processes ..." % n, file=sys.stderr)
            naive = timer(lambda: naive_loop(iface, peers))[0]
            assert peer_count(iface) == n
            row("naive: one `wg set` process per peer, first apply", naive, "%d processes, run once" % n)
            clear(iface)

        figures = timer(lambda: one_wg_set(iface, peers), repeat, prepare=lambda: clear(iface))[0]
        assert peer_count(iface) == n
        row("one `wg set` with all peers in argv, first apply", figures, "bounded by ARG_MAX")
        floor = timer(lambda: one_wg_addconf(iface, peers), repeat, prepare=lambda: clear(iface))[0]
        assert peer_count(iface) == n
        row("one `wg addconf` from a pipe, first apply", floor, "what the module sends")

        print("module as a process ...", file=sys.stderr)
        first, result = timer(lambda: module_process(iface, peers, workdir), repeat, prepare=lambda: clear(iface))
        assert result["changed"] and result["counts"]["added"] == n and peer_count(iface) == n
        row("module process: first apply", first, "added %d" % result["counts"]["added"])
        figures, result = timer(lambda: module_process(iface, peers, workdir), repeat)
        assert result["changed"] is False, "idempotent run reported a change"
        row("module process: idempotent second run", figures, "changed=%s" % result["changed"])
        idempotent = figures
        figures, result = timer(
            lambda: module_process(iface, changed_one, workdir),
            repeat,
            prepare=lambda: module_process(iface, peers, workdir),
        )
        assert result["updated"] == [changed_one[n // 2]["public_key"]], result["updated"]
        row("module process: one peer changed", figures, "updated %d" % len(result["updated"]))

        task_times = {}
        if not options.no_playbook:
            print("ansible-playbook runs ...", file=sys.stderr)
            clear(iface)
            playbook = PlaybookRunner(iface, workdir)
            for label, data, check in (
                ("first apply", peers, lambda r: r["counts"]["added"] == n),
                ("idempotent second run", peers, lambda r: r["changed"] is False),
                ("one peer changed", changed_one, lambda r: r["counts"]["updated"] == 1),
            ):
                figures, (wall, task, result) = timer(lambda data=data: playbook("peers.yml", "wg_peers", data))
                assert check(result), "%s: unexpected result %s" % (label, result["counts"])
                task_times[label] = task
                row("ansible-playbook: %s" % label, figures, "task %.2f s" % task)
            figures, (wall, task, _result) = timer(lambda: playbook("ping.yml", "ping", peers))
            row("ansible-playbook: builtin ping given the same list", figures, "task %.2f s" % task)
    except KeyboardInterrupt:
        print("interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        iface.close()
        run("rm", "-rf", str(workdir))

    print("\nwg_peers benchmark, %d peers, wireguard-go in a network namespace" % options.peers)
    for key, value in info.items():
        print("  %-22s %s" % (key + ":", value))
    print("  %-22s %s" % ("load average at end:", " ".join("%.2f" % value for value in os.getloadavg())))
    print("  %-22s fastest of %d for the batch and module rows" % ("repeats:", options.repeat))
    print()
    width = max(len(entry[0]) for entry in rows)
    print("%-*s  %8s  %8s  %10s  %s" % (width, "what", "wall s", "cpu s", "daemon cpu", "note"))
    for what, wall, cpu, daemon, note in rows:
        print("%-*s  %8.2f  %8.2f  %10.2f  %s" % (width, what, wall, cpu, daemon, note))
    print()
    print("idempotent run, module process: %.2f s wall (target < 2 s)" % idempotent["wall"])
    if task_times:
        print("idempotent run, ansible-playbook task: %.2f s wall" % task_times["idempotent second run"])
    if naive:
        print(
            "first apply: module %.1fx faster than the per-peer loop (target >= 20x); "
            "bare `wg addconf` %.1fx (the daemon's own limit)"
            % (naive["wall"] / first["wall"], naive["wall"] / floor["wall"])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
