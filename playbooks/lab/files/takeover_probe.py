# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the lab's node sees of an HA takeover (playbooks/lab/takeover.yml), run on the node.

For --seconds it pings, every 50 ms, the gateway's link-local through the tunnel (is the tunnel
carrying traffic?) and the pair's virtual address on the segment (has the address moved?), each
reply stamped with its time (ping -D). Every --check-every seconds it runs the uplink check of
the FFMUC Gluon client: HTTP to the gateway's link-local, then `batctl ping` to the batman-adv
gateway. A failed check is what makes a router register again, so the probe then registers
again, as the client would, and counts it. Prints one JSON object: the longest gap of each ping,
the checks, the re-registrations.
"""

import argparse
import itertools
import json
import subprocess
import threading
import time

INTERVAL = 0.05


def ping(target, stamps, stop):
    """Collect reply times (the node's clock) until `stop` is set."""
    argv = ["stdbuf", "-oL", "ping", "-D", "-n", "-i", str(INTERVAL), "-W", "1", target]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        threading.Thread(target=lambda: (stop.wait(), proc.terminate()), daemon=True).start()
        for line in proc.stdout:
            if line.startswith("[") and "bytes from" in line:
                stamps.append(float(line[1 : line.index("]")]))


def longest_gap(stamps, started, ended):
    """(gap, from, to): the longest stretch without a reply, from the first reply (ping's own
    start is no outage) to the probe's end; no reply at all: the whole run."""
    points = [*(stamps or [started]), ended]
    gaps = [(b - a, a) for a, b in itertools.pairwise(points)]
    gap, start = max(gaps)
    return {
        "seconds": round(gap, 3),
        "from": round(start, 3),
        "to": round(start + gap, 3),
        "replies": len(stamps),
        # Every silence of more than 4 ping intervals: the longest one need not be the takeover's.
        "silences": [[round(a, 3), round(g, 3)] for g, a in sorted(gaps, key=lambda gap: gap[1]) if g > 4 * INTERVAL],
    }


def run(argv):
    """The command's result; a command that hangs for 30 s counts as failed (exit status 124, as timeout(1))."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", "timed out")


def uplink_ok(gateway_ll, device):
    """The client's check: HTTP to the gateway's link-local, then batctl ping to the selected batman gateway."""
    # No -T: Debian 12's busybox wget 1.35 segfaults with it (run() bounds the time instead).
    if run(["busybox", "wget", "-q", "-O", "/dev/null", f"http://[{gateway_ll}%{device}]/"]).returncode:
        return "http"
    gateways = run(["batctl", "meshif", "bat0", "gwl", "-H"]).stdout.splitlines()
    selected = [line.split()[1] for line in gateways if line.lstrip().startswith("*")]
    if not selected:
        return "no batman gateway"
    if run(["batctl", "meshif", "bat0", "ping", "-c", "2", "-t", "5", selected[0]]).returncode:
        return f"batctl ping {selected[0]}"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--device", default="wg_mesh_vpn")
    parser.add_argument("--vip", required=True)
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--check-every", type=float, default=10)
    args = parser.parse_args()

    gateway_ll = run(["wg", "show", args.device, "allowed-ips"]).stdout.split()[1].split("/")[0]
    public_key = run(["wg", "show", args.device, "public-key"]).stdout.strip()
    stop = threading.Event()
    tunnel, segment = [], []
    pingers = [
        threading.Thread(target=ping, args=(f"{gateway_ll}%{args.device}", tunnel, stop)),
        threading.Thread(target=ping, args=(args.vip, segment, stop)),
    ]
    started = time.time()
    for pinger in pingers:
        pinger.start()
    checks, failures, registrations = 0, [], 0
    while time.time() - started < args.seconds:
        time.sleep(min(args.check_every, max(0.0, started + args.seconds - time.time())))
        checks += 1
        failed = uplink_ok(gateway_ll, args.device)
        if failed:
            failures.append({"at": round(time.time(), 3), "failed": failed})
            body = json.dumps({"domain": args.domain, "public_key": public_key})
            if run(["busybox", "wget", "-q", "-O-", f"--post-data={body}", args.broker_url]).returncode == 0:
                registrations += 1
    ended = time.time()
    stop.set()
    for pinger in pingers:
        pinger.join()
    print(
        json.dumps(
            {
                "started": round(started, 3),
                "ended": round(ended, 3),
                "gateway_lladdr": gateway_ll,
                "tunnel": longest_gap(tunnel, started, ended),
                "segment": longest_gap(segment, started, ended),
                "uplink_checks": checks,
                "uplink_failures": failures,
                "registrations": registrations,
            }
        )
    )


if __name__ == "__main__":
    main()
