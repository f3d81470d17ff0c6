"""The two WireGuard backends and the rtnetlink layer against real interfaces.

Userspace: wireguard-go in a namespace. Kernel: needs the wireguard module; without it (or
without modprobe to load it) that test skips with the reason, and the VM tier runs it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys

import pytest

from tests.support.gateway import missing_kernel_modules
from tests.support.procs import out, run
from wgmesh import derive
from wgmesh.worker.backend import InterfaceMissing, PeerUpdate
from wgmesh.worker.kernel import KernelBackend
from wgmesh.worker.selector import BackendSelector
from wgmesh.worker.uapi import UapiBackend


def fake_keys(n: int, salt: str = "") -> list[str]:
    return [base64.b64encode(hashlib.sha256(f"{salt}{i}".encode()).digest()).decode() for i in range(n)]


def test_userspace_backend_batch_add_dump_and_remove(gateways):
    gw = gateways(vxlan=False)
    backend = UapiBackend()
    keys = fake_keys(300, gw.id)
    backend.set_peers(gw.wg, [(k, (f"{derive.lladdr_from_key(k)}/128",)) for k in keys])
    device = backend.device(gw.wg)
    assert device.public_key == gw.public_key  # derived from the private key, as `wg pubkey` does
    assert device.listen_port == gw.listen_port
    assert set(device.peers) == set(keys)
    assert set(gw.peers()) == set(keys)  # what `wg` sees agrees
    for k in keys[:5]:
        assert device.peers[k].allowed_ips == (f"{derive.lladdr_from_key(k)}/128",)
        assert device.peers[k].last_handshake == 0
    # a plain set adds to a peer's allowed-ips; a repair replaces them
    lladdr0 = f"{derive.lladdr_from_key(keys[0])}/128"
    backend.set_peers(gw.wg, [(keys[0], ("fe80::1/128",))])
    assert set(backend.device(gw.wg).peers[keys[0]].allowed_ips) == {lladdr0, "fe80::1/128"}
    backend.set_peers(gw.wg, [(keys[0], (lladdr0,))], replace_allowed_ips=True)
    assert backend.device(gw.wg).peers[keys[0]].allowed_ips == (lladdr0,)
    # removal of present and already-gone keys in one request
    gone = fake_keys(2, "never-added")
    backend.remove_peers(gw.wg, keys[:100] + gone)
    assert set(backend.device(gw.wg).peers) == set(keys[100:])
    # wgmesh-ha demote's re-add: endpoints and keepalives go, allowed-ips stay (one request)
    backend.update_peers(gw.wg, [PeerUpdate(k, endpoint="192.0.2.7:51820", keepalive=25) for k in keys[100:]])
    backend.readd_peers(gw.wg, [(k, (f"{derive.lladdr_from_key(k)}/128",)) for k in keys[100:]])
    readded = backend.device(gw.wg).peers
    assert {(p.endpoint, p.keepalive) for p in readded.values()} == {(None, 0)}
    assert readded[keys[100]].allowed_ips == (f"{derive.lladdr_from_key(keys[100])}/128",)


def test_auto_selects_userspace_for_wireguard_go_and_reports_missing_interfaces(gateways):
    gw = gateways(vxlan=False)
    selector = BackendSelector("auto")
    # the worker runs inside the gateway's namespace; so does this check
    out = gw.ns(
        sys.executable,
        "-c",
        "from wgmesh.worker.selector import BackendSelector as S; import sys; "
        "print(S('auto').for_interface(sys.argv[1]).name)",
        gw.wg,
    )
    assert out.strip() == "userspace"
    with pytest.raises(InterfaceMissing):
        selector.for_interface(f"wg-none{gw.id[:4]}")
    with pytest.raises(InterfaceMissing):
        UapiBackend().device(f"wg-none{gw.id[:4]}")


def _kernel_wireguard_available() -> str | None:
    return missing_kernel_modules("wireguard")


def test_kernel_backend_batch_add_dump_and_remove(tmp_path):
    reason = _kernel_wireguard_available()
    if reason:
        pytest.skip(reason)
    netns = f"h6-k{os.getpid() % 100000}"
    ifname = "wg-kern"
    run("ip", "netns", "add", netns)
    try:
        run("ip", "-n", netns, "link", "add", ifname, "type", "wireguard")
        keyfile = tmp_path / "k"
        keyfile.touch(mode=0o600)
        keyfile.write_text(out("wg", "genkey"))
        run("ip", "netns", "exec", netns, "wg", "set", ifname, "private-key", str(keyfile), "listen-port", "51820")
        script = (
            "import json, sys\n"
            "from wgmesh.worker.kernel import KernelBackend\n"
            "keys = json.loads(sys.argv[1]); b = KernelBackend()\n"
            "b.set_peers('wg-kern', [(k, ('fe80::%x/128' % i,)) for i, k in enumerate(keys)])\n"
            "d = b.device('wg-kern'); n1 = len(d.peers)\n"
            "b.remove_peers('wg-kern', keys[:100])\n"
            "print(json.dumps([d.listen_port, d.public_key, n1, sorted(b.device('wg-kern').peers)]))\n"
        )
        keys = fake_keys(600, "kernel")  # several dump messages (~90 peers each)
        dumped = out("ip", "netns", "exec", netns, sys.executable, "-c", script, json.dumps(keys))
        port, public, count, left = json.loads(dumped)
        assert port == 51820
        assert public == out("wg", "pubkey", input=keyfile.read_text()).strip()
        assert count == 600
        assert left == sorted(keys[100:])
        assert KernelBackend.name == "kernel"
    finally:
        run("ip", "netns", "del", netns, check=False)


def test_links_bulk_add_read_and_tolerant_removal(gateways):
    gw = gateways()
    keys = fake_keys(500, "links" + gw.id)
    script = (
        "import json, sys\n"
        "from wgmesh import derive\n"
        "from wgmesh.worker.links import Links\n"
        "keys, wg, vx = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]\n"
        "l = Links(); wi, vi = l.ifindex(wg), l.ifindex(vx)\n"
        "addrs = [derive.lladdr_from_key(k) for k in keys]\n"
        "failed = l.add_many(addrs, wi, vi) + l.add_many(addrs[:5], wi, vi)\n"  # twice: no error
        "bad = l.add_many(addrs[:1], 999999, None)\n"
        "routes, fdb = l.host_routes(wi), l.fdb_destinations(vi, wi)\n"
        "for a in addrs[:10]: l.del_fdb(a, vi, wi); l.del_route(a, wi)\n"
        "for a in addrs[:10]: l.del_fdb(a, vi, wi); l.del_route(a, wi)\n"  # already gone: fine
        "print(json.dumps({'failed': len(failed), 'bad': [str(e) for _, e in bad], 'routes': len(routes & set(addrs)),"
        " 'fdb': len(fdb & set(addrs)), 'll': str(l.link_local(wg))}))\n"
    )
    out = json.loads(gw.ns(sys.executable, "-c", script, json.dumps(keys), gw.wg, gw.vx))
    assert out["failed"] == 0
    assert len(out["bad"]) == 1 and "No such device" in out["bad"][0]
    assert out["routes"] == 500 and out["fdb"] == 500
    assert out["ll"] == gw.lladdr
    lladdrs = {str(derive.lladdr_from_key(k)) for k in keys}
    assert len(lladdrs & gw.routes()) == 490  # what `ip` and `bridge` see agrees
    assert len(lladdrs & gw.fdb()) == 490
