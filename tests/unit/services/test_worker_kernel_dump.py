"""Kernel WireGuard over netlink, without a kernel: real pyroute2 messages, encoded and decoded.

The kernel backend itself needs the wireguard module (VM tier, see
tests/integration/services/test_worker_kernel.py); what can be checked here is how a dump
spread over several messages is joined, that an interrupted dump is read again rather than
used, and what the batched set request carries.
"""

from __future__ import annotations

import base64
import hashlib
import socket

import pytest
from pyroute2.netlink import NLM_F_DUMP_INTR, NLM_F_MULTI
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted
from pyroute2.netlink.generic.wireguard import (
    WGPEER_F_REMOVE_ME,
    WGPEER_F_REPLACE_ALLOWEDIPS,
    WGPEER_F_UPDATE_ONLY,
    wgmsg,
)

from wgmesh import derive
from wgmesh.worker.backend import PeerUpdate
from wgmesh.worker.kernel import (
    DumpInconsistent,
    build_readd_message,
    build_set_message,
    build_update_message,
    merge_device_dump,
    read_consistent_dump,
)

KEY_A = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
KEY_B = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="
KEY_C = "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg="


def _allowed(cidr):
    addr, mask = cidr.split("/")
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    return {
        "attrs": [
            ["WGALLOWEDIP_A_FAMILY", fam],
            ["WGALLOWEDIP_A_IPADDR", socket.inet_pton(fam, addr)],
            ["WGALLOWEDIP_A_CIDR_MASK", int(mask)],
        ]
    }


def dump_message(peers, flags=NLM_F_MULTI, device=True):
    """One message of a WG_CMD_GET_DEVICE dump as the kernel sends it, round-tripped through bytes."""
    msg = wgmsg()
    msg["cmd"] = 0
    msg["version"] = 1
    msg["attrs"].append(["WGDEVICE_A_IFNAME", "wg-test"])
    if device:
        msg["attrs"].append(["WGDEVICE_A_PUBLIC_KEY", KEY_C])
        msg["attrs"].append(["WGDEVICE_A_LISTEN_PORT", 51820])
    entries = []
    for key, ips, handshake in peers:
        attrs = [["WGPEER_A_PUBLIC_KEY", key]]
        if handshake is not None:
            attrs.append(["WGPEER_A_LAST_HANDSHAKE_TIME", {"tv_sec": handshake, "tv_nsec": 0}])
        attrs.append(["WGPEER_A_ALLOWEDIPS", [_allowed(ip) for ip in ips]])
        entries.append({"attrs": attrs})
    msg["attrs"].append(["WGDEVICE_A_PEERS", entries])
    msg["header"]["type"] = 0x20
    msg["header"]["flags"] = flags
    msg.encode()
    decoded = wgmsg(msg.data)
    decoded.decode()
    return decoded


def test_peers_spread_over_messages_are_joined():
    # the kernel continues a peer with many allowed-ips in the next message (same key again)
    messages = [
        dump_message([(KEY_A, ["fe80::1/128"], 1700000000), (KEY_B, ["fe80::2/128", "10.0.0.0/8"], None)]),
        dump_message([(KEY_B, ["192.0.2.0/24"], None)], device=False),
        dump_message([(KEY_C, ["fe80::3/128"], 1700000100)], device=False),
    ]
    device = merge_device_dump(messages)
    assert device.public_key == KEY_C and device.listen_port == 51820
    assert set(device.peers) == {KEY_A, KEY_B, KEY_C}
    assert device.peers[KEY_B].allowed_ips == ("fe80::2/128", "10.0.0.0/8", "192.0.2.0/24")
    assert device.peers[KEY_A].last_handshake == 1700000000
    assert device.peers[KEY_B].last_handshake == 0


def test_large_dump_of_many_messages_loses_no_peer():
    keys = [base64.b64encode(hashlib.sha256(str(i).encode()).digest()).decode() for i in range(500)]
    messages = [
        dump_message([(k, [f"{derive.lladdr_from_key(k)}/128"], None) for k in keys[i : i + 90]], device=(i == 0))
        for i in range(0, len(keys), 90)
    ]
    assert len(messages) == 6
    device = merge_device_dump(messages)
    assert set(device.peers) == set(keys)
    assert all(device.peers[k].allowed_ips == (f"{derive.lladdr_from_key(k)}/128",) for k in keys)


def test_interrupted_dump_is_read_again_not_half_used():
    clean = [dump_message([(KEY_A, ["fe80::1/128"], None)]), dump_message([(KEY_B, ["fe80::2/128"], None)])]
    half = [dump_message([(KEY_A, ["fe80::1/128"], None)], flags=NLM_F_MULTI | NLM_F_DUMP_INTR)]
    attempts = iter([half, half, clean])
    calls = []

    def fetch():
        calls.append(1)
        return next(attempts)

    messages = read_consistent_dump(fetch)
    assert len(calls) == 3
    assert set(merge_device_dump(messages).peers) == {KEY_A, KEY_B}


def test_flag_on_a_later_message_of_the_dump_also_counts():
    tainted = [
        dump_message([(KEY_A, ["fe80::1/128"], None)]),
        dump_message([(KEY_B, ["fe80::2/128"], None)], flags=NLM_F_MULTI | NLM_F_DUMP_INTR),
    ]
    clean = [dump_message([(KEY_C, ["fe80::3/128"], None)])]
    attempts = iter([tainted, clean])
    assert set(merge_device_dump(read_consistent_dump(lambda: next(attempts))).peers) == {KEY_C}


def test_exception_from_pyroute2_is_retried_too():
    clean = [dump_message([(KEY_A, ["fe80::1/128"], None)])]
    state = {"n": 0}

    def fetch():
        state["n"] += 1
        if state["n"] == 1:
            raise NetlinkDumpInterrupted()
        return clean

    assert read_consistent_dump(fetch) == clean


def test_dump_that_never_settles_fails_clearly():
    half = [dump_message([(KEY_A, ["fe80::1/128"], None)], flags=NLM_F_MULTI | NLM_F_DUMP_INTR)]
    with pytest.raises(DumpInconsistent, match="interrupted 4 times"):
        read_consistent_dump(lambda: half, attempts=4)


def test_batched_set_message_carries_every_peer():
    msg = build_set_message(
        "wg-test", add=[(KEY_A, ("fe80::1/128",)), (KEY_B, ("fe80::2/128",))], remove=[KEY_C], replace_allowed_ips=True
    )
    msg["header"]["type"] = 0x20
    msg.encode()
    decoded = wgmsg(msg.data)
    decoded.decode()
    assert decoded.get_attr("WGDEVICE_A_IFNAME") == "wg-test"
    peers = decoded.get_attr("WGDEVICE_A_PEERS")
    got = {
        p.get_attr("WGPEER_A_PUBLIC_KEY").decode(): (
            p.get_attr("WGPEER_A_FLAGS"),
            [ip["addr"] for ip in p.get_attr("WGPEER_A_ALLOWEDIPS") or []],
        )
        for p in peers
    }
    assert got == {
        KEY_A: (WGPEER_F_REPLACE_ALLOWEDIPS, ["fe80::1/128"]),
        KEY_B: (WGPEER_F_REPLACE_ALLOWEDIPS, ["fe80::2/128"]),
        KEY_C: (WGPEER_F_REMOVE_ME, []),
    }
    # no endpoint and no keepalive: the gateway never dials nodes
    for p in peers:
        assert p.get_attr("WGPEER_A_ENDPOINT") is None
        assert p.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") is None


def test_readd_message_removes_each_peer_then_adds_it_back_without_endpoint_or_keepalive():
    # the kernel applies the entries in order: remove, then a new peer with the same key
    msg = build_readd_message("wg-test", [(KEY_A, ("fe80::1/128", "10.0.0.0/24")), (KEY_B, ("fe80::2/128",))])
    msg["header"]["type"] = 0x20
    msg.encode()
    decoded = wgmsg(msg.data)
    decoded.decode()
    got = [
        (
            p.get_attr("WGPEER_A_PUBLIC_KEY").decode(),
            p.get_attr("WGPEER_A_FLAGS"),
            [ip["addr"] for ip in p.get_attr("WGPEER_A_ALLOWEDIPS") or []],
            p.get_attr("WGPEER_A_ENDPOINT"),
            p.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL"),
        )
        for p in decoded.get_attr("WGDEVICE_A_PEERS")
    ]
    assert got == [
        (KEY_A, WGPEER_F_REMOVE_ME, [], None, None),
        (KEY_A, 0, ["fe80::1/128", "10.0.0.0/24"], None, None),
        (KEY_B, WGPEER_F_REMOVE_ME, [], None, None),
        (KEY_B, 0, ["fe80::2/128"], None, None),
    ]


def test_set_message_adds_without_replacing_allowed_ips_by_default():
    msg = build_set_message("wg-test", add=[(KEY_A, ("fe80::1/128",))])
    msg["header"]["type"] = 0x20
    msg.encode()
    decoded = wgmsg(msg.data)
    decoded.decode()
    (peer,) = decoded.get_attr("WGDEVICE_A_PEERS")
    assert peer.get_attr("WGPEER_A_FLAGS") == 0


def test_update_message_keeps_order_sets_endpoint_and_keepalive_update_only():
    msg = build_update_message(
        "wg-test",
        [
            PeerUpdate(KEY_A, endpoint="[2001:db8::1]:4242"),
            PeerUpdate(KEY_A, keepalive=25),
            PeerUpdate(KEY_B, endpoint="198.51.100.7:51820", keepalive=0),
        ],
    )
    msg["header"]["type"] = 0x20
    msg.encode()
    decoded = wgmsg(msg.data)
    decoded.decode()

    def endpoint(peer):
        value = peer.get_attr("WGPEER_A_ENDPOINT")
        return value and (value["addr"], value["port"])

    got = [
        (
            p.get_attr("WGPEER_A_PUBLIC_KEY").decode(),
            p.get_attr("WGPEER_A_FLAGS"),
            endpoint(p),
            p.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL"),
            p.get_attr("WGPEER_A_ALLOWEDIPS"),
        )
        for p in decoded.get_attr("WGDEVICE_A_PEERS")
    ]
    assert got == [
        (KEY_A, WGPEER_F_UPDATE_ONLY, ("2001:db8::1", 4242), None, None),
        (KEY_A, WGPEER_F_UPDATE_ONLY, None, 25, None),
        (KEY_B, WGPEER_F_UPDATE_ONLY, ("198.51.100.7", 51820), 0, None),
    ]
