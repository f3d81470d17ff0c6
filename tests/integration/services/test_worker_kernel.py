"""The worker's kernel WireGuard backend and its rtnetlink routes/FDB on the real kernel.

Needs the kernel's wireguard and vxlan modules. A host without them skips every test here with
that reason; the VM tier (`molecule/worker-kernel-vm`) runs this file inside a Debian 6.1 guest.
Each test gets its own namespace `h7-<id>` holding a kernel WireGuard interface `wg-<id>` (key,
listen port, the link-local address derived from its key) and a VXLAN `vx-<id>` over it, as the
gateway role sets them up. The backend runs in a thread that entered the namespace (setns
changes only that thread). Nothing is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.gateway import missing_kernel_modules
from tests.support.net import in_netns
from tests.support.procs import out, wait_until
from wgmesh import derive
from wgmesh.worker import reconcile
from wgmesh.worker.backend import InterfaceMissing, PeerUpdate
from wgmesh.worker.kernel import KernelBackend, _BatchWireGuard, read_consistent_dump
from wgmesh.worker.links import Links

VNI = 4831583
PEERS = 1200  # a dump of these spans several netlink messages (7 on Debian 12's 6.1 kernel)


def _missing_requirement() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "wg", "bridge"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian packages iproute2, wireguard-tools)"
    return missing_kernel_modules("wireguard", "vxlan")


def fake_keys(n: int, salt: str) -> list[str]:
    """Public keys for peers that never connect (any 32 bytes are a key to the kernel)."""
    return [base64.b64encode(hashlib.sha256(f"{salt}{i}".encode()).digest()).decode() for i in range(n)]


def lladdr(key: str) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(derive.lladdr_from_key(key))


@dataclass
class KernelGateway:
    netns: str
    wg: str
    vx: str
    keyfile: Path
    listen_port: int = 51820

    def ip(self, *args: str, check: bool = True) -> str:
        return out("ip", "-n", self.netns, *args, check=check)

    def exec(self, *args: str, check: bool = True, input: str | None = None) -> str:
        return out("ip", "netns", "exec", self.netns, *args, check=check, input=input)

    @property
    def public_key(self) -> str:
        return out("wg", "pubkey", input=self.keyfile.read_text()).strip()

    @property
    def lladdr(self) -> ipaddress.IPv6Address:
        return lladdr(self.public_key)

    def create(self, vxlan: bool = True) -> None:
        out("ip", "netns", "add", self.netns)
        self.ip("link", "set", "lo", "up")
        self.ip("link", "add", self.wg, "type", "wireguard")
        self.exec("wg", "set", self.wg, "private-key", str(self.keyfile), "listen-port", str(self.listen_port))
        self.ip("address", "add", f"{self.lladdr}/64", "dev", self.wg, "nodad")
        self.ip("link", "set", self.wg, "up")
        if vxlan:
            self.ip(
                "link", "add", self.vx, "type", "vxlan", "id", str(VNI), "local", str(self.lladdr),
                "dev", self.wg, "dstport", "8472",
            )  # fmt: skip
            self.ip("link", "set", self.vx, "up")

    def wg_dump(self) -> dict[str, set[ipaddress.IPv6Network]]:
        """What `wg show dump` (an independent netlink reader) sees: key -> allowed-ips."""
        lines = self.exec("wg", "show", self.wg, "dump").splitlines()[1:]
        peers = {}
        for line in lines:
            fields = line.split("\t")
            ips = fields[3]
            peers[fields[0]] = {ipaddress.ip_network(ip) for ip in ips.split(",")} if ips != "(none)" else set()
        return peers

    def routes(self) -> set[ipaddress.IPv6Address]:
        text = self.ip("-6", "route", "show", "dev", self.wg)
        return {ipaddress.IPv6Address(line.split()[0].split("/")[0]) for line in text.splitlines() if "/" not in line}

    def fdb(self) -> set[ipaddress.IPv6Address]:
        text = out("bridge", "-n", self.netns, "fdb", "show", "dev", self.vx)
        found = set()
        for line in text.splitlines():
            words = line.split()
            if words[0] == "00:00:00:00:00:00" and "dst" in words and f"via {self.wg}" in line:
                found.add(ipaddress.IPv6Address(words[words.index("dst") + 1]))
        return found


@pytest.fixture
def kernel_gateway(tmp_path):
    """Factory of kernel gateways in namespaces h7-<id>; all removed at teardown, also on failure."""
    reason = _missing_requirement()
    if reason:
        pytest.skip(reason)
    made = []

    def factory(vxlan: bool = True) -> KernelGateway:
        gid = secrets.token_hex(3)
        keyfile = tmp_path / f"{gid}.key"
        keyfile.touch(mode=0o600)
        keyfile.write_text(out("wg", "genkey"))
        gw = KernelGateway(netns=f"h7-{gid}", wg=f"wg-{gid}", vx=f"vx-{gid}", keyfile=keyfile)
        made.append(gw)
        gw.create(vxlan=vxlan)
        return gw

    yield factory
    for gw in made:
        out("ip", "netns", "del", gw.netns, check=False)


def test_batch_add_of_many_peers_reads_back_complete_over_many_dump_messages(kernel_gateway):
    gw = kernel_gateway(vxlan=False)
    keys = fake_keys(PEERS, gw.netns)
    backend = KernelBackend()

    def add_and_read():
        backend.set_peers(gw.wg, [(k, (f"{lladdr(k)}/128",)) for k in keys])
        with _BatchWireGuard() as wg:
            messages = read_consistent_dump(lambda: wg.info(gw.wg))
        return len(messages), backend.device(gw.wg)

    message_count, device = in_netns(gw.netns, add_and_read)
    print(f"{PEERS} peers came back in {message_count} netlink messages")
    assert message_count > 1, "the dump must span several messages for this test to mean anything"
    assert device.public_key == gw.public_key
    assert device.listen_port == gw.listen_port
    assert set(device.peers) == set(keys)
    for key in keys:
        peer = device.peers[key]
        assert [ipaddress.ip_network(ip) for ip in peer.allowed_ips] == [ipaddress.ip_network(f"{lladdr(key)}/128")]
        assert peer.last_handshake == 0
        assert peer.endpoint is None
    # an independent reader of the same interface agrees
    assert gw.wg_dump() == {k: {ipaddress.ip_network(f"{lladdr(k)}/128")} for k in keys}


def test_a_peer_whose_allowed_ips_span_messages_is_joined_and_repaired(kernel_gateway):
    gw = kernel_gateway(vxlan=False)
    keys = fake_keys(300, gw.netns)
    wide = keys[150]
    many = tuple(f"fd00:{i:x}::/64" for i in range(1, 601))  # far more than one message holds
    backend = KernelBackend()

    def add_wide_and_read():
        backend.set_peers(gw.wg, [(k, (f"{lladdr(k)}/128",)) for k in keys])
        backend.set_peers(gw.wg, [(wide, many)])  # a plain set adds to the allowed-ips
        return backend.device(gw.wg)

    device = in_netns(gw.netns, add_wide_and_read)
    assert set(device.peers) == set(keys)
    expected = {ipaddress.ip_network(ip) for ip in (f"{lladdr(wide)}/128", *many)}
    assert {ipaddress.ip_network(ip) for ip in device.peers[wide].allowed_ips} == expected
    assert len(device.peers[wide].allowed_ips) == len(expected), "no allowed-ip may be read twice"
    assert gw.wg_dump()[wide] == expected

    def repair():
        backend.set_peers(gw.wg, [(wide, (f"{lladdr(wide)}/128",))], replace_allowed_ips=True)
        return backend.device(gw.wg).peers[wide]

    repaired = in_netns(gw.netns, repair)
    assert [ipaddress.ip_network(ip) for ip in repaired.allowed_ips] == [ipaddress.ip_network(f"{lladdr(wide)}/128")]


def test_removal_of_present_and_already_gone_peers(kernel_gateway):
    gw = kernel_gateway(vxlan=False)
    keys = fake_keys(400, gw.netns)
    never_added = fake_keys(5, "never" + gw.netns)
    backend = KernelBackend()

    def add_remove_twice():
        backend.set_peers(gw.wg, [(k, (f"{lladdr(k)}/128",)) for k in keys])
        backend.remove_peers(gw.wg, keys[:300] + never_added)
        backend.remove_peers(gw.wg, keys[:300])  # all gone already: still no error
        return set(backend.device(gw.wg).peers)

    assert in_netns(gw.netns, add_remove_twice) == set(keys[300:])
    assert set(gw.wg_dump()) == set(keys[300:])


def test_readd_drops_endpoints_and_keepalives_and_keeps_allowed_ips(kernel_gateway):
    """wgmesh-ha demote's request: each peer removed and added back in one message (over more
    than one chunk here)."""
    gw = kernel_gateway(vxlan=False)
    keys = fake_keys(300, "readd" + gw.netns)
    backend = KernelBackend()

    def readd():
        backend.set_peers(gw.wg, [(k, (f"{lladdr(k)}/128",)) for k in keys])
        backend.update_peers(gw.wg, [PeerUpdate(k, endpoint="192.0.2.7:51820", keepalive=25) for k in keys])
        backend.readd_peers(gw.wg, [(k, (f"{lladdr(k)}/128",)) for k in keys])
        return backend.device(gw.wg).peers

    peers = in_netns(gw.netns, readd)
    assert set(peers) == set(keys)
    assert {(p.endpoint, p.keepalive) for p in peers.values()} == {(None, 0)}
    assert all(peers[k].allowed_ips == (f"{lladdr(k)}/128",) for k in keys)


def test_missing_interface_is_reported_as_missing(kernel_gateway):
    gw = kernel_gateway(vxlan=False)
    backend = KernelBackend()
    absent = f"wg-no{gw.netns[-6:]}"
    with pytest.raises(InterfaceMissing, match=absent):
        in_netns(gw.netns, backend.device, absent)
    with pytest.raises(InterfaceMissing, match=absent):
        in_netns(gw.netns, backend.set_peers, absent, [(fake_keys(1, "x")[0], ("fe80::1/128",))])


def test_routes_and_fdb_in_bulk_over_kernel_wireguard_and_tolerant_removal(kernel_gateway):
    gw = kernel_gateway()
    addrs = [lladdr(k) for k in fake_keys(PEERS, gw.netns)]

    def add_read_remove():
        links = Links()
        try:
            wi, vi = links.ifindex(gw.wg), links.ifindex(gw.vx)
            failed = links.add_many(addrs, wi, vi) + links.add_many(addrs[:20], wi, vi)  # again: no error
            refused = links.add_many(addrs[:1], 999999, None)  # no such device: reported, not raised
            routes, fdb = links.host_routes(wi), links.fdb_destinations(vi, wi)
            for a in addrs[:50]:
                links.del_fdb(a, vi, wi)
                links.del_route(a, wi)
            for a in addrs[:50]:  # already gone: fine
                links.del_fdb(a, vi, wi)
                links.del_route(a, wi)
            # the single-entry paths, re-adding what exists included
            for a in addrs[:5]:
                links.add_route(a, wi)
                links.add_fdb(a, vi, wi)
                links.add_fdb(a, vi, wi)
            after = links.host_routes(wi), links.fdb_destinations(vi, wi)
            return failed, [str(e) for dummy, e in refused], routes, fdb, after, links.link_local(gw.wg)
        finally:
            links.close()

    failed, refused, routes, fdb, after, link_local = in_netns(gw.netns, add_read_remove)
    assert failed == []
    assert len(refused) == 1 and "No such device" in refused[0]
    assert routes == set(addrs)
    assert fdb == set(addrs)
    left = set(addrs[50:]) | set(addrs[:5])
    assert after == (left, left)
    assert link_local == gw.lladdr
    # what iproute2 reads from the kernel agrees
    assert gw.routes() == left
    assert gw.fdb() == left


def test_removal_tolerates_a_route_deleted_behind_its_back(kernel_gateway):
    gw = kernel_gateway()
    addr = lladdr(fake_keys(1, gw.netns)[0])

    def add():
        links = Links()
        try:
            wi, vi = links.ifindex(gw.wg), links.ifindex(gw.vx)
            return links.add_many([addr], wi, vi)
        finally:
            links.close()

    assert in_netns(gw.netns, add) == []
    gw.ip("-6", "route", "del", f"{addr}/128", "dev", gw.wg)

    def remove():
        links = Links()
        try:
            wi, vi = links.ifindex(gw.wg), links.ifindex(gw.vx)
            links.del_fdb(addr, vi, wi)
            links.del_route(addr, wi)
            return links.fdb_destinations(vi, wi), links.host_routes(wi)
        finally:
            links.close()

    assert in_netns(gw.netns, remove) == (set(), set())


def test_stale_selection_keys_on_real_kernel_handshakes(kernel_gateway):
    """Two kernel gateways over a veth pair make a real handshake. The peer with a handshake
    is kept, the ones that never shook hands go; later the handshaken one goes too."""
    a, b = kernel_gateway(vxlan=False), kernel_gateway(vxlan=False)
    veth_a, veth_b = f"ve-{a.netns[-6:]}", f"ve-{b.netns[-6:]}"
    out("ip", "link", "add", veth_a, "netns", a.netns, "type", "veth", "peer", veth_b, "netns", b.netns)
    for gw, veth, underlay in ((a, veth_a, "192.0.2.1/24"), (b, veth_b, "192.0.2.2/24")):
        gw.ip("address", "add", underlay, "dev", veth)
        gw.ip("link", "set", veth, "up")
    b.exec("wg", "set", b.wg, "peer", a.public_key, "allowed-ips", f"{a.lladdr}/128")
    idle = fake_keys(50, a.netns)
    backend = KernelBackend()
    in_netns(a.netns, backend.set_peers, a.wg, [(k, (f"{lladdr(k)}/128",)) for k in idle])
    started = time.time()
    # persistent-keepalive going from 0 to a value sends a keepalive at once; without a
    # session that is a handshake initiation (what the HA tests rely on, docs/architecture.md)
    a.exec(
        "wg", "set", a.wg, "peer", b.public_key, "allowed-ips", f"{b.lladdr}/128",
        "endpoint", "192.0.2.2:51820", "persistent-keepalive", "1",
    )  # fmt: skip

    def shaken_hands():
        peers = in_netns(a.netns, backend.device, a.wg).peers
        return peers if peers[b.public_key].last_handshake > 0 else None

    peers = wait_until(shaken_hands, timeout=60, interval=0.5, what="a handshake between the two kernel interfaces")
    handshake = peers[b.public_key].last_handshake
    assert started - 1 <= handshake <= time.time() + 1, "the kernel's handshake time is wall-clock seconds"
    assert all(peers[k].last_handshake == 0 for k in idle)

    policy = reconcile.StalePolicy(stale_after=600, grace_period=60)
    registered = {k: started - 3600 for k in [*idle, b.public_key]}  # all registered an hour ago

    def stale_at(now: float) -> set[str]:
        plan = reconcile.plan(registered, peers, set(), None, lladdr, (), registered, now, policy)
        return set(plan.remove)

    assert stale_at(time.time()) == set(idle)
    assert stale_at(handshake + 600) == set(idle) | {b.public_key}
    # within the grace period nothing is stale, handshake or not
    fresh = dict.fromkeys(registered, time.time())
    assert reconcile.plan(fresh, peers, set(), None, lladdr, (), fresh, time.time(), policy).remove == []
