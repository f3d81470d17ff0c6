"""Kernel WireGuard over generic netlink (pyroute2 `WireGuard`).

A peer dump spans several netlink messages (about 90 peers each, and one peer's allowed-ips
may continue in the next message). If peers change while the kernel dumps, it flags the
messages NLM_F_DUMP_INTR: such a dump is thrown away and read again, never half-used.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Iterable, Sequence

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError
from pyroute2.netlink.generic.wireguard import (
    WG_CMD_SET_DEVICE,
    WG_GENL_VERSION,
    WGPEER_F_REMOVE_ME,
    WGPEER_F_REPLACE_ALLOWEDIPS,
    WGPEER_F_UPDATE_ONLY,
    AsyncWireGuard,
    WireGuard,
    wgmsg,
)

from wgmesh.worker.backend import BackendError, Device, InterfaceMissing, Peer, PeerUpdate, split_endpoint

log = logging.getLogger(__name__)

DUMP_ATTEMPTS = 10
# Peers per set request: keeps each message far below the netlink socket buffer (as `wg` does).
PEERS_PER_MESSAGE = 256


class DumpInconsistent(BackendError):
    """Every attempt to dump the device was interrupted by concurrent changes."""


def read_consistent_dump(fetch: Callable[[], Iterable], attempts: int = DUMP_ATTEMPTS) -> list:
    """All messages of one uninterrupted dump; retried while the kernel flags it interrupted."""
    for attempt in range(1, attempts + 1):
        try:
            messages = list(fetch())
        except NetlinkDumpInterrupted:
            messages = None
        if messages is not None and not any(m["header"]["flags"] & NLM_F_DUMP_INTR for m in messages):
            return messages
        log.debug("netlink dump interrupted (attempt %d of %d), reading again", attempt, attempts)
    raise DumpInconsistent(f"netlink dump interrupted {attempts} times in a row")


def _key(value) -> str:
    # pyroute2 hands back base64 bytes for key attributes
    if isinstance(value, dict) and "value" in value:
        value = value["value"]
    return value.decode() if isinstance(value, bytes) else value


def merge_device_dump(messages: Sequence) -> Device:
    """Fold the messages of one dump into a Device; a peer split over messages is joined."""
    public_key = None
    listen_port = 0
    fwmark = 0
    peers: dict[str, dict] = {}
    for msg in messages:
        if msg.get_attr("WGDEVICE_A_PUBLIC_KEY") is not None:
            public_key = _key(msg.get_attr("WGDEVICE_A_PUBLIC_KEY"))
        if msg.get_attr("WGDEVICE_A_LISTEN_PORT") is not None:
            listen_port = msg.get_attr("WGDEVICE_A_LISTEN_PORT")
        if msg.get_attr("WGDEVICE_A_FWMARK") is not None:
            fwmark = msg.get_attr("WGDEVICE_A_FWMARK")
        for peer in msg.get_attr("WGDEVICE_A_PEERS") or ():
            key = _key(peer.get_attr("WGPEER_A_PUBLIC_KEY"))
            entry = peers.setdefault(key, {"ips": [], "handshake": 0.0, "endpoint": None, "keepalive": 0})
            handshake = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
            if handshake is not None:
                entry["handshake"] = handshake["tv_sec"] + handshake["tv_nsec"] / 1e9
            keepalive = peer.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL")
            if keepalive is not None:
                entry["keepalive"] = keepalive
            endpoint = peer.get_attr("WGPEER_A_ENDPOINT")
            if endpoint is not None:
                addr = endpoint["addr"]
                entry["endpoint"] = f"[{addr}]:{endpoint['port']}" if ":" in addr else f"{addr}:{endpoint['port']}"
            entry["ips"].extend(ip["addr"] for ip in peer.get_attr("WGPEER_A_ALLOWEDIPS") or () if "addr" in ip)
    return Device(
        public_key=public_key,
        listen_port=listen_port,
        peers={k: Peer(k, tuple(v["ips"]), v["handshake"], v["endpoint"], v["keepalive"]) for k, v in peers.items()},
        fwmark=fwmark,
    )


def _allowed_ip_attrs(cidr: str) -> dict:
    addr, dummy, mask = cidr.partition("/")
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    return {
        "attrs": [
            ["WGALLOWEDIP_A_FAMILY", family],
            ["WGALLOWEDIP_A_IPADDR", socket.inet_pton(family, addr)],
            ["WGALLOWEDIP_A_CIDR_MASK", int(mask)],
        ]
    }


def _add_attrs(key: str, allowed_ips: tuple[str, ...], flags: int = 0) -> dict:
    return {
        "attrs": [
            ["WGPEER_A_PUBLIC_KEY", key],
            ["WGPEER_A_FLAGS", flags],
            ["WGPEER_A_ALLOWEDIPS", [_allowed_ip_attrs(ip) for ip in allowed_ips]],
        ]
    }


def _remove_attrs(key: str) -> dict:
    return {"attrs": [["WGPEER_A_PUBLIC_KEY", key], ["WGPEER_A_FLAGS", WGPEER_F_REMOVE_ME]]}


def build_set_message(
    ifname: str,
    add: Iterable[tuple[str, tuple[str, ...]]] = (),
    remove: Iterable[str] = (),
    replace_allowed_ips: bool = False,
) -> wgmsg:
    """One WG_CMD_SET_DEVICE carrying many peers (pyroute2's set() takes one peer per call)."""
    flags = WGPEER_F_REPLACE_ALLOWEDIPS if replace_allowed_ips else 0
    peers = [_add_attrs(key, allowed_ips, flags) for key, allowed_ips in add]
    peers += [_remove_attrs(key) for key in remove]
    return _device_message(ifname, peers)


def build_readd_message(ifname: str, peers: Iterable[tuple[str, tuple[str, ...]]]) -> wgmsg:
    """Each peer removed and added back in one message: the kernel applies the peer entries in
    order and forgets a removed key at once, so the second entry makes a new peer."""
    entries = []
    for key, allowed_ips in peers:
        entries += [_remove_attrs(key), _add_attrs(key, allowed_ips)]
    return _device_message(ifname, entries)


def _device_message(ifname: str, peers: list | None = None, fwmark: int | None = None) -> wgmsg:
    msg = wgmsg()
    msg["cmd"] = WG_CMD_SET_DEVICE
    msg["version"] = WG_GENL_VERSION
    msg["attrs"].append(["WGDEVICE_A_IFNAME", ifname])
    if fwmark is not None:
        msg["attrs"].append(["WGDEVICE_A_FWMARK", fwmark])
    if peers is not None:
        msg["attrs"].append(["WGDEVICE_A_PEERS", peers])
    return msg


def build_update_message(ifname: str, updates: Iterable[PeerUpdate]) -> wgmsg:
    """Endpoints/keepalives of existing peers (WGPEER_F_UPDATE_ONLY), applied by the kernel in order."""
    peers = []
    for update in updates:
        attrs = [["WGPEER_A_PUBLIC_KEY", update.public_key], ["WGPEER_A_FLAGS", WGPEER_F_UPDATE_ONLY]]
        if update.endpoint is not None:
            addr, port = split_endpoint(update.endpoint)
            attrs.append(["WGPEER_A_ENDPOINT", {"addr": addr, "port": port}])
        if update.keepalive is not None:
            attrs.append(["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", update.keepalive])
        peers.append({"attrs": attrs})
    return _device_message(ifname, peers)


class _AsyncBatchWireGuard(AsyncWireGuard):
    async def send_set(self, msg: wgmsg):
        # the same exchange as pyroute2's AsyncWireGuard.set(), for a prebuilt message
        msg["header"]["type"] = self.prid
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
        msg["header"]["pid"] = self.pid
        msg.encode()
        self.sendto(msg.data, (0, 0))
        (reply,) = [x async for x in self.get()]
        err = reply["header"].get("error", None)
        if err is not None:
            raise err
        return reply


class _BatchWireGuard(WireGuard):
    async_class = _AsyncBatchWireGuard

    def send_set(self, msg: wgmsg):
        return self._run_with_cleanup(self.asyncore.send_set, msg)


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class KernelBackend:
    name = "kernel"

    def _call(self, ifname: str, action: Callable[[WireGuard], object]):
        try:
            with _BatchWireGuard() as wg:
                return action(wg)
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                raise InterfaceMissing(f"interface {ifname}: no kernel WireGuard device ({exc})") from None
            raise BackendError(f"interface {ifname}: netlink: {exc}") from None
        except OSError as exc:  # the generic netlink socket itself
            raise BackendError(f"interface {ifname}: netlink socket: {exc}") from None

    def device(self, ifname: str) -> Device:
        messages = self._call(ifname, lambda wg: read_consistent_dump(lambda: wg.info(ifname)))
        return merge_device_dump(messages)

    def set_peers(
        self, ifname: str, peers: Iterable[tuple[str, tuple[str, ...]]], replace_allowed_ips: bool = False
    ) -> None:
        peers = list(peers)
        if peers:
            self._call(
                ifname,
                lambda wg: [
                    wg.send_set(build_set_message(ifname, add=c, replace_allowed_ips=replace_allowed_ips))
                    for c in _chunks(peers, PEERS_PER_MESSAGE)
                ],
            )

    def remove_peers(self, ifname: str, keys: Iterable[str]) -> None:
        # the kernel ignores WGPEER_F_REMOVE_ME for a key it does not know: "already gone" is fine
        keys = list(keys)
        if keys:
            self._call(
                ifname,
                lambda wg: [wg.send_set(build_set_message(ifname, remove=c)) for c in _chunks(keys, PEERS_PER_MESSAGE)],
            )

    def readd_peers(self, ifname: str, peers: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        peers = list(peers)
        if peers:  # two entries per peer
            self._call(
                ifname,
                lambda wg: [
                    wg.send_set(build_readd_message(ifname, c)) for c in _chunks(peers, PEERS_PER_MESSAGE // 2)
                ],
            )

    def update_peers(self, ifname: str, updates: Iterable[PeerUpdate]) -> None:
        updates = list(updates)
        if updates:  # chunks keep the order: a later chunk is sent after the earlier one is done
            self._call(
                ifname,
                lambda wg: [wg.send_set(build_update_message(ifname, c)) for c in _chunks(updates, PEERS_PER_MESSAGE)],
            )

    def set_fwmark(self, ifname: str, mark: int) -> None:
        self._call(ifname, lambda wg: wg.send_set(_device_message(ifname, fwmark=mark)))
