"""wg_mtus against real WireGuard: two wireguard-go interfaces in namespaces of our own
(prefix h1-), joined by a veth of the underlay MTU.

A packet of exactly the computed WireGuard MTU crosses in one underlay packet of exactly
the underlay MTU, and one byte more is refused. That checks the 32 + 8 + IP bytes of
WireGuard overhead on the wire rather than from a table.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import time

import pytest

from ansible_collections.freifunk.wgmesh.plugins.filter.mtu import wg_mtus

WG_PORT = 51820  # inside our own namespaces only
APP_PORT = 9999

# Runs in the receiving namespace: captures the underlay frames of the WireGuard data
# messages (AF_PACKET) and receives the application datagram over the tunnel.
RECEIVER = r"""
import json, select, socket, struct, sys
under, inner_addr, app_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
cap.bind((under, 0))
app = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
app.bind((inner_addr, app_port))
print("ready", flush=True)
outer, inner = [], None


def take(frame):
    ethertype = struct.unpack("!H", frame[12:14])[0]
    if ethertype == 0x86DD and frame[20] in (17, 44):  # UDP, or a fragment header
        size, fragmented = 40 + struct.unpack("!H", frame[18:20])[0], frame[20] == 44
    elif ethertype == 0x0800 and frame[23] == 17:
        size = struct.unpack("!H", frame[16:18])[0]
        fragmented = bool(struct.unpack("!H", frame[20:22])[0] & 0x3FFF)  # MF or an offset
    else:
        return
    # Only WireGuard runs on this link; handshakes and keepalives stay under 200 bytes.
    if size > 200:
        outer.append({"size": size, "fragmented": fragmented})


while inner is None:
    ready, _, _ = select.select([cap, app], [], [], 30)  # a safety net, not a measurement
    if not ready:
        break
    if cap in ready:
        take(cap.recv(65535))
    if app in ready:
        inner = len(app.recv(65535))
# the frame that carried the datagram was queued before the datagram: drain the rest
cap.setblocking(False)
while True:
    try:
        take(cap.recv(65535))
    except BlockingIOError:
        break
print(json.dumps({"inner": inner, "outer": outer}), flush=True)
"""

# Runs in the sending namespace: the largest datagram that fits the WireGuard MTU, with
# fragmentation forbidden, then one byte more.
SENDER = r"""
import errno, json, socket, sys
dst, app_port, payload = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, 62, 1)  # IPV6_DONTFRAG
s.sendto(b"x" * payload, (dst, app_port))
try:
    s.sendto(b"x" * (payload + 1), (dst, app_port))
    refused = None
except OSError as e:
    refused = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps({"one_more": refused}))
"""


def _run(*argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and r.returncode != 0:
        raise AssertionError("%s failed: %s" % (" ".join(argv), r.stderr.strip()))
    return r


class Side:
    """One namespace with a wireguard-go interface; close() undoes everything."""

    def __init__(self, tag, tmp_path):
        suffix = "%d%s" % (os.getpid() % 1000, secrets.token_hex(2))
        self.ns = "h1-mtu%s-%s" % (tag, suffix)
        self.ifname = ("h1%s%s" % (tag, suffix))[:15]  # sockets are host-global: unique names
        self.tmp_path = tmp_path
        self.proc = None

    def start(self):
        _run("ip", "netns", "add", self.ns)
        _run("ip", "-n", self.ns, "link", "set", "lo", "up")
        log = (self.tmp_path / ("wireguard-go-%s.log" % self.ifname)).open("w")
        env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error")
        # `ip netns exec` execs wireguard-go: this PID is the daemon's own.
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "wireguard-go", self.ifname], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        for _attempt in range(200):
            if self.proc.poll() is not None:
                pytest.skip("wireguard-go did not start (exit %d), see %s" % (self.proc.returncode, log.name))
            if _run("wg", "show", self.ifname, check=False).returncode == 0:
                break
            time.sleep(0.05)
        else:
            pytest.skip("wireguard-go started but %s never answered `wg show`" % self.ifname)
        private = _run("wg", "genkey").stdout.strip()
        key_file = self.tmp_path / ("%s.key" % self.ifname)
        key_file.touch(mode=0o600)
        key_file.write_text(private + "\n")
        self.key_file = str(key_file)
        self.public = subprocess.run(
            ["wg", "pubkey"], input=private + "\n", capture_output=True, text=True, check=True
        ).stdout.strip()
        return self

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        sock = "/var/run/wireguard/%s.sock" % self.ifname
        if os.path.exists(sock):
            os.unlink(sock)
        _run("ip", "netns", "del", self.ns, check=False)


@pytest.fixture
def sides(tmp_path):
    for tool in ("ip", "wg", "wireguard-go"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed (Debian: iproute2, wireguard-tools, wireguard-go)" % tool)
    if os.geteuid() != 0:
        pytest.skip("network namespaces and TUN devices need root")
    a, b = Side("a", tmp_path), Side("b", tmp_path)
    try:
        yield a.start(), b.start()
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("family", ["ipv6", "ipv4"])
def test_wireguard_mtu_fills_the_underlay_exactly(sides, family):
    a, b = sides
    underlay = 1500
    m = wg_mtus(underlay, family)
    under_addr = {"ipv6": ("fd00:1::1", "fd00:1::2", 64), "ipv4": ("10.201.0.1", "10.201.0.2", 24)}[family]
    _run("ip", "-n", a.ns, "link", "add", "under", "type", "veth", "peer", "name", "under", "netns", b.ns)
    for side, addr, peer, peer_addr, inner, peer_inner in (
        (a, under_addr[0], b, under_addr[1], "fd01::1", "fd01::2"),
        (b, under_addr[1], a, under_addr[0], "fd01::2", "fd01::1"),
    ):
        nodad = ["nodad"] if family == "ipv6" else []
        _run("ip", "-n", side.ns, "addr", "add", "%s/%d" % (addr, under_addr[2]), "dev", "under", *nodad)
        _run("ip", "-n", side.ns, "link", "set", "under", "mtu", str(underlay), "up")
        endpoint = ("[%s]:%d" if family == "ipv6" else "%s:%d") % (peer_addr, WG_PORT)
        _run(
            *("ip", "netns", "exec", side.ns, "wg", "set", side.ifname, "private-key", side.key_file),
            *(
                "listen-port",
                str(WG_PORT),
                "peer",
                peer.public,
                "allowed-ips",
                peer_inner + "/128",
                "endpoint",
                endpoint,
            ),
        )
        _run("ip", "-n", side.ns, "addr", "add", inner + "/64", "dev", side.ifname, "nodad")
        _run("ip", "-n", side.ns, "link", "set", side.ifname, "mtu", str(m["wireguard"]), "up")

    receiver = subprocess.Popen(
        ["ip", "netns", "exec", b.ns, sys.executable, "-c", RECEIVER, "under", "fd01::2", str(APP_PORT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout.readline().strip() == "ready", receiver.stderr.read()
        # the largest inner IPv6/UDP datagram: WireGuard MTU minus IPv6 40 and UDP 8
        sent = _run(
            "ip",
            "netns",
            "exec",
            a.ns,
            sys.executable,
            "-c",
            SENDER,
            "fd01::2",
            str(APP_PORT),
            str(m["wireguard"] - 48),
        )
        out, err = receiver.communicate(timeout=60)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    lines = out.strip().splitlines()
    assert lines, "the receiver printed nothing: %s" % err
    got = json.loads(lines[-1])
    assert json.loads(sent.stdout)["one_more"] == "EMSGSIZE"
    assert got["inner"] == m["wireguard"] - 48, err
    # exactly one data packet, of exactly the underlay MTU, not fragmented
    assert got["outer"] == [{"size": underlay, "fragmented": False}]
