"""Simulated nodes of the ha scenario, on the nodes' container (run with the broker's venv Python).

    ha_nodes.py up COUNT         register COUNT nodes at the broker and bring their tunnels up
    ha_nodes.py outages SINCE    per node, when its tunnel carried traffic again after SINCE (JSON)
    ha_nodes.py gaps SINCE UNTIL per data node, its longest time without a ping reply in between (JSON)
    ha_nodes.py ping             one ping through every node's tunnel (JSON: node -> ok)

A node is what a Gluon node's wgkex client makes: its own key, POSTed to the broker's v2 API,
whose answer (the pair's address, port, public key and link address) becomes the one peer of a
wireguard-go interface wgn<i>, with a persistent keepalive of 25 s and the link-local address
the worker derives from the node's key. Even-numbered nodes send data (a ping through the
tunnel every 0.2 s, a transient systemd unit); odd ones only keepalives.
State in STATE; every process this starts is a transient unit or a wireguard-go named wgn<i>.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from wgmesh.derive import lladdr_from_key

BROKER = "http://localhost/api/v2/wg/key/exchange"
DOMAIN = "ffmuc_welt"
STATE = Path("/var/lib/wgmesh-nodes/nodes.json")
LOG_DIR = Path("/var/log/wgmesh-nodes")
PING_INTERVAL = "0.2"
KEEPALIVE = "25"
UAPI = Path("/var/run/wireguard")


def sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True).stdout.strip()


def register(public_key: str, attempts: int = 30) -> dict:
    """As the wgkex client does: POST the key, retry while the broker has no gateway to offer yet
    (every 2 s, the broker's per-client rate)."""
    body = json.dumps({"domain": DOMAIN, "public_key": public_key}).encode()
    request = urllib.request.Request(BROKER, data=body, headers={"Content-Type": "application/json"})
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - BROKER is a constant http:// URL
                return json.load(answer)["Endpoint"]
        except urllib.error.HTTPError as exc:
            print(f"broker answered {exc.code} for {public_key} (attempt {attempt + 1})", file=sys.stderr)
            time.sleep(2)
    raise SystemExit(f"the broker at {BROKER} did not accept {public_key} in {attempts} attempts")


def wait_for(path: Path, attempts: int = 200) -> None:
    for dummy in range(attempts):
        if path.exists():
            return
        time.sleep(0.05)
    raise SystemExit(f"{path} did not appear")


def up(count: int) -> None:
    STATE.parent.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    nodes = []
    for index in range(count):
        ifname, private = f"wgn{index}", sh("wg", "genkey")
        public = sh("wg", "pubkey", stdin=private)
        gateway = register(public)
        target = gateway["AllowedIPs"][0]
        # forks; the device lives as long as that process (as the gateway role's unit starts it)
        env = {**os.environ, "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
        subprocess.run(["wireguard-go", ifname], env=env, stdout=subprocess.DEVNULL, check=True)
        wait_for(UAPI / f"{ifname}.sock")  # the parent returns before its child made the socket
        sh("wg", "set", ifname, "private-key", "/dev/stdin", "listen-port", str(20000 + index),
           "peer", gateway["PublicKey"], "endpoint", f"{gateway['Address']}:{gateway['Port']}",
           "allowed-ips", f"{target}/128", "persistent-keepalive", KEEPALIVE, stdin=private)  # fmt: skip
        # Only the derived address, as on a Gluon node: the kernel's own link-local would be the
        # ping's source, which the gateway drops (not the node's allowed IP there).
        sh("ip", "link", "set", "dev", ifname, "addrgenmode", "none")
        sh("ip", "address", "add", f"{lladdr_from_key(public)}/64", "dev", ifname, "nodad")
        sh("ip", "link", "set", ifname, "up")
        node = {"ifname": ifname, "public_key": public, "target": target, "data": index % 2 == 0}
        if node["data"]:
            # -D: each reply with its epoch time; -O: a line for each missed reply too
            # stdbuf -oL: a line per reply as it comes (ping buffers a file by kilobytes)
            unit, log = f"--unit=wgmesh-node-{ifname}", f"--property=StandardOutput=file:{LOG_DIR}/{ifname}.ping"
            ping = ["ping", "-6", "-D", "-n", "-i", PING_INTERVAL, "-I", ifname, f"{target}%{ifname}"]
            sh("systemd-run", unit, log, "stdbuf", "-oL", *ping)
        nodes.append(node)
    STATE.write_text(json.dumps(nodes, indent=1))


def last_handshake(ifname: str) -> float:
    """From wireguard-go's UAPI, with nanoseconds (`wg show` gives whole seconds)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(UAPI / f"{ifname}.sock"))
        sock.sendall(b"get=1\n\n")
        reply = b""
        while not reply.endswith(b"\n\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    fields = dict(line.split("=", 1) for line in reply.decode().splitlines() if "=" in line)
    return int(fields.get("last_handshake_time_sec", 0)) + int(fields.get("last_handshake_time_nsec", 0)) / 1e9


def replies(ifname: str) -> list[float]:
    """The times of a data node's ping replies: `[1764493000.123456] 64 bytes from ...`."""
    lines = (LOG_DIR / f"{ifname}.ping").read_text().splitlines()
    return [float(line[1 : line.index("]")]) for line in lines if line.startswith("[") and " bytes from " in line]


def back_after(times: list[float], since: float) -> float | None:
    """When traffic flowed again after SINCE: the reply that ends the longest silence from a
    second before SINCE on (a reply the dying member sent in the crash's first milliseconds
    does not end the outage)."""
    window = [t for t in times if t >= since - 1]
    if len(window) < 2:
        return None
    gaps = [(later - earlier, later) for earlier, later in itertools.pairwise(window)]
    return max(gaps)[1]


def gaps(since: float, until: float) -> dict:
    """Per data node, the longest time between two of its ping replies from SINCE to UNTIL
    (the window's edges count as replies: a node silent throughout shows the whole window),
    and whether its ping still runs. Keepalive-only nodes send nothing to time."""
    result = {}
    for node in json.loads(STATE.read_text()):
        if not node["data"]:
            continue
        ifname = node["ifname"]
        times = [since, *(t for t in replies(ifname) if since < t < until), until]
        running = subprocess.run(["systemctl", "is-active", "--quiet", f"wgmesh-node-{ifname}"], check=False)
        result[ifname] = {
            "longest": round(max(later - earlier for earlier, later in itertools.pairwise(times)), 3),
            "pinging": running.returncode == 0,
        }
    return result


def outages(since: float) -> dict:
    """Per node, when it carried traffic again after SINCE. A data node: the ping reply that
    ended its outage (its ping unit must still run). A keepalive-only node: its first completed
    handshake, which only the new member's trigger starts (such a node never starts one)."""
    result = {}
    for node in json.loads(STATE.read_text()):
        ifname = node["ifname"]
        if node["data"]:
            unit = f"wgmesh-node-{ifname}"
            running = subprocess.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode == 0
            back = back_after(replies(ifname), since)
        else:
            running, handshake = False, last_handshake(ifname)
            back = handshake if handshake > since else None
        result[ifname] = {
            "data": node["data"],
            "pinging": running,
            "outage": round(back - since, 3) if back is not None else None,
        }
    return result


def ping() -> dict:
    result = {}
    for node in json.loads(STATE.read_text()):
        ifname = node["ifname"]
        argv = ["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "-I", ifname, f"{node['target']}%{ifname}"]
        result[ifname] = subprocess.run(argv, capture_output=True, check=False).returncode == 0
    return result


def main() -> int:
    command = sys.argv[1]
    if command == "up":
        up(int(sys.argv[2]))
    elif command == "outages":
        print(json.dumps(outages(float(sys.argv[2]))))
    elif command == "gaps":
        print(json.dumps(gaps(float(sys.argv[2]), float(sys.argv[3]))))
    elif command == "ping":
        print(json.dumps(ping()))
    else:
        raise SystemExit(f"unknown command {command!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
