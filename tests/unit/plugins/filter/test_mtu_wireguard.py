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

from ansible_collections.freifunk.wgmesh.plugins.filter.derive import wg_lladdr, wg_vni
from ansible_collections.freifunk.wgmesh.plugins.filter.mtu import wg_mtus
from ansible_collections.freifunk.wgmesh.plugins.filter.naming import wg_ifnames

WG_PORT = 51820  # inside our own namespaces only
APP_PORT = 9999

# Runs in the receiving namespace: captures the underlay frames of the WireGuard data
# messages (AF_PACKET) and receives the application datagram over the tunnel.
RECEIVER = r"""
import json, select, socket, struct, sys
capture_if, link_header, inner_addr, app_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
cap.bind((capture_if, 0))
app = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
app.bind((inner_addr, app_port))
print("ready", flush=True)
outer, inner = [], None


def take(frame):
    ip = frame[link_header:]  # Ethernet on a veth, nothing on a TUN
    if ip[0] >> 4 == 6 and ip[6] in (17, 44):  # UDP, or a fragment header
        size, fragmented = 40 + struct.unpack("!H", ip[4:6])[0], ip[6] == 44
    elif ip[0] >> 4 == 4 and ip[9] == 17:
        size = struct.unpack("!H", ip[2:4])[0]
        fragmented = bool(struct.unpack("!H", ip[6:8])[0] & 0x3FFF)  # MF or an offset
    else:
        return
    # Only our tunnel runs on this link; handshakes, keepalives, ND stay under 200 bytes.
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

    def __init__(self, tag, tmp_path, ifname=None):
        suffix = "%d%s" % (os.getpid() % 1000, secrets.token_hex(2))
        self.ns = "h1-mtu%s-%s" % (tag, suffix)
        self.ifname = ifname or ("h1%s%s" % (tag, suffix))[:15]  # sockets are host-global: unique names
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
def new_side(tmp_path):
    """Factory of started Sides; every one is closed at teardown, also after a failure."""
    for tool in ("ip", "wg", "wireguard-go"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed (Debian: iproute2, wireguard-tools, wireguard-go)" % tool)
    if os.geteuid() != 0:
        pytest.skip("network namespaces and TUN devices need root")
    made = []

    def new(tag, ifname=None):
        side = Side(tag, tmp_path, ifname)
        made.append(side)
        return side.start()

    try:
        yield new
    finally:
        for side in made:
            side.close()


@pytest.fixture
def sides(new_side):
    return new_side("a"), new_side("b")


def _underlay(a, b, underlay):
    """A veth named `under` between the two namespaces, IPv6 and IPv4 addresses on it."""
    _run("ip", "-n", a.ns, "link", "add", "under", "type", "veth", "peer", "name", "under", "netns", b.ns)
    for side, v6, v4 in ((a, "fd00:1::1", "10.201.0.1"), (b, "fd00:1::2", "10.201.0.2")):
        _run("ip", "-n", side.ns, "addr", "add", v6 + "/64", "dev", "under", "nodad")
        _run("ip", "-n", side.ns, "addr", "add", v4 + "/24", "dev", "under")
        _run("ip", "-n", side.ns, "link", "set", "under", "mtu", str(underlay), "up")


@pytest.mark.parametrize("family", ["ipv6", "ipv4"])
def test_wireguard_mtu_fills_the_underlay_exactly(sides, family):
    a, b = sides
    underlay = 1500
    m = wg_mtus(underlay, family)
    _underlay(a, b, underlay)
    # a is the node (it knows the endpoint), b the gateway (learns it): only a initiates
    endpoint = {"ipv6": "[fd00:1::2]", "ipv4": "10.201.0.2"}[family]
    for side, peer, inner, peer_inner, where in (
        (a, b, "fd01::1", "fd01::2", ("endpoint", "%s:%d" % (endpoint, WG_PORT))),
        (b, a, "fd01::2", "fd01::1", ()),
    ):
        _run(
            *("ip", "netns", "exec", side.ns, "wg", "set", side.ifname, "private-key", side.key_file),
            *("listen-port", str(WG_PORT), "peer", peer.public, "allowed-ips", peer_inner + "/128", *where),
        )
        _run("ip", "-n", side.ns, "addr", "add", inner + "/64", "dev", side.ifname, "nodad")
        _run("ip", "-n", side.ns, "link", "set", side.ifname, "mtu", str(m["wireguard"]), "up")

    got, one_more = _send_and_capture(a, b, "under", 14, "fd01::2", m["wireguard"] - 48)
    assert one_more == "EMSGSIZE"
    assert got["inner"] == m["wireguard"] - 48
    # exactly one data packet, of exactly the underlay MTU, not fragmented
    assert got["outer"] == [{"size": underlay, "fragmented": False}]


def _send_and_capture(a, b, capture_if, link_header, dst, payload):
    """Send the largest datagram (and one byte more) from a to dst in b; capture in b."""
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", b.ns, sys.executable, "-c", RECEIVER, capture_if, str(link_header), dst, str(APP_PORT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout.readline().strip() == "ready", receiver.stderr.read()
        sent = _run("ip", "netns", "exec", a.ns, sys.executable, "-c", SENDER, dst, str(APP_PORT), str(payload))
        out, err = receiver.communicate(timeout=60)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    lines = out.strip().splitlines()
    assert lines, "the receiver printed nothing: %s" % err
    return json.loads(lines[-1]), json.loads(sent.stdout)["one_more"]


def test_full_stack_built_from_the_filters(new_side):
    """The data path of docs/architecture.md built only from filter output: interface names from
    wg_ifnames, link-local addresses from wg_lladdr of the real public keys, the VNI from
    wg_vni, MTUs from wg_mtus. The largest datagram the VXLAN takes crosses WireGuard in
    one unfragmented packet of exactly the WireGuard MTU.

    Each side gets its own domain only because wireguard-go's sockets are host-global
    (two "wg-welt" cannot coexist on one host); batman-adv is left out (the host kernel need
    not have the module; the VM tier covers it).
    """
    underlay, seed = 1500, "1f0b31cecdf980317f453b162ac476ee09cf9997b03e684d4f2f484e75d9cd26"
    m, vni = wg_mtus(underlay), wg_vni(seed)
    suffix = "%d%s" % (os.getpid() % 1000, secrets.token_hex(2))
    names = {tag: wg_ifnames("ffmuc_%s%s" % (tag, suffix), ["ffmuc_"]) for tag in "ab"}
    a, b = new_side("a", names["a"]["wg"]), new_side("b", names["b"]["wg"])
    _underlay(a, b, underlay)
    # a is the node (it knows the endpoint), b the gateway: no endpoint, as a worker sets it up.
    # Only a can initiate, so the handshake never collides with one from b.
    for side, peer, tag, where, vx_addr in (
        (a, b, "a", ("endpoint", "[fd00:1::2]:%d" % WG_PORT), "fd02::1"),
        (b, a, "b", (), "fd02::2"),
    ):
        wg, vx = names[tag]["wg"], names[tag]["vx"]
        own, peer_ll = wg_lladdr(side.public), wg_lladdr(peer.public)
        _run(
            *("ip", "netns", "exec", side.ns, "wg", "set", wg, "private-key", side.key_file),
            *("listen-port", str(WG_PORT), "peer", peer.public, "allowed-ips", wg_lladdr(peer.public, prefixlen=128)),
            *where,
        )
        _run("ip", "-n", side.ns, "addr", "add", own + "/64", "dev", wg, "nodad")
        _run("ip", "-n", side.ns, "link", "set", wg, "mtu", str(m["wireguard"]), "up")
        _run(
            *("ip", "-n", side.ns, "link", "add", vx, "type", "vxlan", "id", str(vni), "dstport", "8472"),
            *("local", own, "dev", wg),
        )
        _run("ip", "-n", side.ns, "link", "set", vx, "mtu", str(m["vxlan"]), "up")
        _run(
            *("ip", "netns", "exec", side.ns, "bridge", "fdb", "append", "00:00:00:00:00:00"),
            *("dev", vx, "dst", peer_ll, "via", wg),
        )
        _run("ip", "-n", side.ns, "addr", "add", vx_addr + "/64", "dev", vx, "nodad")
    # capture on b's WireGuard interface (a TUN: no link header)
    got, one_more = _send_and_capture(a, b, names["b"]["wg"], 0, "fd02::2", m["vxlan"] - 48)
    assert one_more == "EMSGSIZE"
    assert got["inner"] == m["vxlan"] - 48
    assert got["outer"] == [{"size": m["wireguard"], "fragmented": False}]
