"""The HA failover bench's network: a pair of gateway members, simulated nodes, one LAN.

All in network namespaces named with one random id (several runs may share the host):

  hl-<id>          the LAN: a bridge; every other namespace has an eth0 on it (10.99.0.0/16)
  hga-<id>/hgb-<id>  the members: eth0 10.99.0.2 / .3, the VIP 10.99.0.1 (keepalived), a
                   wireguard-go interface hga<id>/hgb<id> with the pair's one key and port
                   40011, every node as a peer (allowed-ips its tunnel address, no endpoint:
                   as the worker leaves them); all of 10.201.0.0/16 is local, so a node's
                   ping to its target is answered by whichever member is active
  hn<k>-<id>       node namespaces, NODES_PER_NS nodes each on one underlay address; a node is
                   a wireguard-go interface hn<id>x<i> (own key; port 20000 + i, below the
                   ephemeral range) whose one peer is the gateway at VIP:40011, persistent
                   keepalive 25 s (as Gluon)

Only our own namespaces' addresses are used. Every process is started here and stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.net import in_netns
from tests.support.procs import Unavailable, run, terminate, wait_until
from wgmesh.worker.uapi import UapiBackend, key_to_hex, parse_set_reply, public_from_private_hex

VIP = "10.99.0.1"
MEMBER_IP = {"a": "10.99.0.2", "b": "10.99.0.3"}
PRIORITY = {"a": 150, "b": 100}
GW_PORT = 40011
NODE_KEEPALIVE_S = 25
NODES_PER_NS = 50
NODE_NET, TARGET_NET = "10.200.0.0/16", "10.201.0.0/16"
SOCKETS = Path("/var/run/wireguard")


def tunnel_addr(net: str, index: int) -> str:
    n = index + 1
    return f"{net.split('.')[0]}.{net.split('.')[1]}.{n // 256}.{n % 256}"


def new_keypair() -> tuple[str, str]:
    private_hex = os.urandom(32).hex()  # wireguard-go clamps it, as `wg genkey` would
    return private_hex, public_from_private_hex(private_hex)


def require() -> None:
    for tool in ("ip", "wireguard-go", "keepalived"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not installed (hack/system-deps.txt)")
    if os.geteuid() != 0:
        raise Unavailable("network namespaces need root")


# rtnetlink by hand, on sockets opened inside a namespace: pyroute2's netns= forks a helper
# process, which a benchmark that kills processes and handles signals does not want
RTM_NEWLINK, RTM_NEWADDR = 16, 20
RTMGRP_IPV4_IFADDR = 0x10
NLM_F_REQUEST, NLM_F_ACK = 1, 4
IFF_UP = 1
IFA_ADDRESS = 1


def netlink_socket(netns: str, groups: int = 0) -> socket.socket:
    """A NETLINK_ROUTE socket that lives in `netns` (usable from any thread afterwards)."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        sock.bind((0, groups))
        return sock

    return in_netns(netns, make)


def set_link(sock: socket.socket, index: int, up: bool) -> None:
    """ip link set <index> up|down, and wait for the kernel's answer."""
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP)
    sock.send(struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body)
    reply = sock.recv(4096)
    error = struct.unpack_from("=i", reply, 16)[0]
    if error:
        raise OSError(-error, f"link #{index}: {os.strerror(-error)}")


def new_addresses(sock: socket.socket):
    """Yield each IPv4 address added in the socket's namespace (bound to RTMGRP_IPV4_IFADDR)."""
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if kind == RTM_NEWADDR:
                attr = offset + 16 + 8  # nlmsghdr, ifaddrmsg
                while attr + 4 <= offset + length:
                    alen, atype = struct.unpack_from("=HH", data, attr)
                    if atype == IFA_ADDRESS and alen == 8:
                        yield socket.inet_ntoa(data[attr + 4 : attr + 8])
                    attr += (alen + 3) & ~3
            offset += (length + 3) & ~3


@dataclass
class Node:
    index: int
    netns: str
    ifname: str
    port: int
    private_hex: str
    public_key: str
    sends_data: bool
    proc: subprocess.Popen | None = None

    @property
    def tunnel(self) -> str:
        return tunnel_addr(NODE_NET, self.index)

    @property
    def target(self) -> str:
        return tunnel_addr(TARGET_NET, self.index)


@dataclass
class Member:
    name: str  # "a" or "b"
    netns: str
    ifname: str
    wg_proc: subprocess.Popen | None = None
    keepalived: subprocess.Popen | None = None
    extra_pids: list[int] = field(default_factory=list)


class Lab:
    def __init__(self, workdir: Path, nodes: int):
        self.id = secrets.token_hex(2)
        self.work = workdir
        self.lan = f"hl-{self.id}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.members = {m: Member(m, f"hg{m}-{self.id}", f"hg{m}{self.id}") for m in ("a", "b")}
        self.gw_private, self.gw_public = new_keypair()
        self.nodes: list[Node] = []
        for i in range(nodes):
            private_hex, public = new_keypair()
            ns = f"hn{i // NODES_PER_NS}-{self.id}"
            self.nodes.append(Node(i, ns, f"hn{self.id}x{i}", 20000 + i, private_hex, public, i % 2 == 0))
        self._lan_ports = 0
        self.uapi = UapiBackend()

    # --- namespaces and the LAN -------------------------------------------------------
    def add_netns(self, name: str, address: str | None) -> None:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        if address is None:
            return
        self._lan_ports += 1
        port = f"p{self._lan_ports}"
        run("ip", "link", "add", port, "netns", self.lan, "type", "veth", "peer", "name", "eth0", "netns", name)
        run("ip", "-n", self.lan, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", name, "addr", "add", f"{address}/16", "dev", "eth0")
        run("ip", "-n", name, "link", "set", "eth0", "up")

    def lan_port_index(self, netns: str) -> int:
        """The LAN-side ifindex of a namespace's eth0 (its veth peer, eth0@if<index>)."""
        return int(run("ip", "-n", netns, "-o", "link", "show", "eth0").stdout.split("@if")[1].split(":")[0])

    def build_lan(self) -> None:
        self.add_netns(self.lan, None)
        run("ip", "-n", self.lan, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.lan, "link", "set", "br0", "up")

    # --- wireguard-go -----------------------------------------------------------------
    def start_wireguard(self, netns: str, ifname: str) -> subprocess.Popen:
        env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error")
        # `ip netns exec` execs wireguard-go: this PID is the daemon's own
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "wireguard-go", ifname],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a signal to our process group (Ctrl-C) reaches us, not them
        )
        self.procs.append(proc)
        return proc

    def wait_socket(self, ifname: str, proc: subprocess.Popen) -> None:
        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"wireguard-go {ifname} exited with {proc.returncode}")
            return (SOCKETS / f"{ifname}.sock").exists()

        wait_until(up, 30, 0.02, what=f"{ifname}'s UAPI socket")

    def uapi_set(self, ifname: str, lines: list[str]) -> None:
        parse_set_reply(self.uapi._exchange(ifname, "\n".join(["set=1", *lines]) + "\n\n"))

    # --- members ----------------------------------------------------------------------
    def start_member_wg(self, m: str, up: bool) -> None:
        member = self.members[m]
        member.wg_proc = self.start_wireguard(member.netns, member.ifname)
        self.wait_socket(member.ifname, member.wg_proc)
        lines = [f"private_key={self.gw_private}", f"listen_port={GW_PORT}"]
        for node in self.nodes:
            lines += [f"public_key={key_to_hex(node.public_key)}", f"allowed_ip={node.tunnel}/32"]
        self.uapi_set(member.ifname, lines)
        if up:
            self.member_link(m, True)

    def member_link(self, m: str, up: bool) -> None:
        member = self.members[m]
        if up:
            run("ip", "-n", member.netns, "link", "set", member.ifname, "up")
            run("ip", "-n", member.netns, "route", "replace", NODE_NET, "dev", member.ifname)
        else:
            run("ip", "-n", member.netns, "link", "set", member.ifname, "down")

    def build_members(self) -> None:
        for m, member in self.members.items():
            self.add_netns(member.netns, MEMBER_IP[m])
            run("ip", "-n", member.netns, "route", "add", "local", TARGET_NET, "dev", "lo")
            self.start_member_wg(m, up=False)

    # --- nodes ------------------------------------------------------------------------
    def start_nodes(self, nodes: list[Node]) -> None:
        """One namespace's nodes: processes first, then their config, then one `ip -batch`."""
        if nodes[0].netns not in self.namespaces:
            k = int(nodes[0].netns[2:].split("-")[0])
            self.add_netns(nodes[0].netns, f"10.99.{1 + k // 250}.{k % 250 + 1}")
        for node in nodes:
            node.proc = self.start_wireguard(node.netns, node.ifname)
        batch = []
        for node in nodes:
            self.wait_socket(node.ifname, node.proc)
            self.uapi_set(
                node.ifname,
                [
                    f"private_key={node.private_hex}",
                    f"listen_port={node.port}",
                    f"public_key={key_to_hex(self.gw_public)}",
                    f"endpoint={VIP}:{GW_PORT}",
                    f"persistent_keepalive_interval={NODE_KEEPALIVE_S}",
                    f"allowed_ip={node.target}/32",
                ],
            )
            batch += [
                f"addr add {node.tunnel}/32 dev {node.ifname}",
                f"link set {node.ifname} up",
                f"route add {node.target}/32 dev {node.ifname} src {node.tunnel}",
            ]
        run("ip", "-n", nodes[0].netns, "-batch", "-", input="\n".join(batch) + "\n")

    def reset_node(self, node: Node) -> None:
        """As a rebooting node: drop its session with the gateway and start a handshake."""
        peer = [f"public_key={key_to_hex(self.gw_public)}"]
        self.uapi_set(node.ifname, [*peer, "remove=true"])
        self.uapi_set(
            node.ifname,
            [*peer, f"endpoint={VIP}:{GW_PORT}", f"allowed_ip={node.target}/32",
             f"persistent_keepalive_interval={NODE_KEEPALIVE_S}"],
        )  # fmt: skip

    def node_handshake(self, node: Node) -> float:
        """The node's last handshake with the gateway (seconds since the epoch; 0 = none)."""
        peer = self.uapi.device(node.ifname).peers.get(self.gw_public)
        return peer.last_handshake if peer else 0.0

    def member_device(self, m: str):
        return self.uapi.device(self.members[m].ifname)

    def holder(self) -> str | None:
        """The member that holds the VIP now."""
        for m, member in self.members.items():
            if f" {VIP}/" in run("ip", "-n", member.netns, "-o", "addr", "show", "dev", "eth0").stdout:
                return m
        return None

    # --- cleanup ----------------------------------------------------------------------
    def close(self) -> None:
        for member in self.members.values():
            for pid in member.extra_pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for proc in reversed(self.procs):
            terminate(proc, timeout=5)
        for name in reversed(self.namespaces):
            run("ip", "netns", "del", name, check=False)
        for ifname in [m.ifname for m in self.members.values()] + [n.ifname for n in self.nodes]:
            (SOCKETS / f"{ifname}.sock").unlink(missing_ok=True)
