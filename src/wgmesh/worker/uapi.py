"""Userspace WireGuard (wireguard-go) over its UAPI socket: a line protocol, see
https://www.wireguard.com/xplatform/ ("get=1" / "set=1", key=value lines, an errno line, a blank line).

Keys travel hex-encoded; we speak base64 everywhere else. The device's own public key is not
in the protocol: it is derived from the private key, which never leaves this module.
"""

from __future__ import annotations

import base64
import socket
import subprocess
from collections.abc import Iterable

from wgmesh.worker.backend import (
    UAPI_SOCKET_DIR,
    BackendError,
    Device,
    InterfaceMissing,
    Peer,
    PeerUpdate,
    uapi_socket_path,
)

SOCKET_TIMEOUT_S = 10.0


class UapiProtocolError(BackendError):
    """The reply did not follow the protocol (or reported an errno)."""


def key_to_hex(key_b64: str) -> str:
    raw = base64.b64decode(key_b64, validate=True)
    if len(raw) != 32:
        raise ValueError(f"WireGuard key must be 32 bytes, got {len(raw)}")
    return raw.hex()


def hex_to_key(key_hex: str) -> str:
    try:
        raw = bytes.fromhex(key_hex)
    except ValueError as exc:
        raise UapiProtocolError(f"bad hex key {key_hex[:8]}...: {exc}") from None
    if len(raw) != 32:
        raise UapiProtocolError(f"key of {len(raw)} bytes in UAPI reply")
    return base64.b64encode(raw).decode()


def public_from_private_hex(private_hex: str) -> str:
    """X25519 public key, with `cryptography` if installed, else `wg pubkey` (wireguard-tools)."""
    try:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    except ImportError:
        private_b64 = base64.b64encode(bytes.fromhex(private_hex)).decode()
        try:
            out = subprocess.run(["wg", "pubkey"], input=private_b64, capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise BackendError(
                f"cannot derive the public key: install cryptography or wireguard-tools ({exc})"
            ) from None
        return out.stdout.strip()
    private = X25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex))
    return base64.b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _check_errno(value: str) -> None:
    try:
        code = int(value)
    except ValueError:
        raise UapiProtocolError(f"errno line {value!r} is not an integer") from None
    if code != 0:
        raise UapiProtocolError(f"wireguard-go answered errno={code}")


def parse_get(text: str) -> Device:
    """Parse a complete `get=1` reply. Device keys come first; each public_key= starts a peer."""
    private_hex: str | None = None
    listen_port = 0
    fwmark = 0
    peers: dict[str, Peer] = {}
    current: dict | None = None
    saw_errno = False

    def finish(peer: dict | None) -> None:
        if peer is not None:
            handshake = peer["sec"] + peer["nsec"] / 1e9
            peers[peer["key"]] = Peer(peer["key"], tuple(peer["ips"]), handshake, peer["endpoint"], peer["keepalive"])

    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise UapiProtocolError(f"UAPI reply line {lineno}: no '=' in {line[:40]!r}")
        if saw_errno:
            raise UapiProtocolError(f"UAPI reply line {lineno}: {name!r} after the errno line")
        if name == "errno":
            _check_errno(value)
            saw_errno = True
        elif name == "public_key":
            finish(current)
            current = {"key": hex_to_key(value), "ips": [], "sec": 0, "nsec": 0, "endpoint": None, "keepalive": 0}
        elif current is None:  # device section
            if name == "private_key":
                private_hex = value
            elif name == "listen_port":
                listen_port = _int(value, name, lineno)
            elif name == "fwmark":
                fwmark = _int(value, name, lineno)
        elif name == "allowed_ip":
            current["ips"].append(value)
        elif name == "last_handshake_time_sec":
            current["sec"] = _int(value, name, lineno)
        elif name == "last_handshake_time_nsec":
            current["nsec"] = _int(value, name, lineno)
        elif name == "endpoint":
            current["endpoint"] = value
        elif name == "persistent_keepalive_interval":
            current["keepalive"] = _int(value, name, lineno)
        # other peer fields (tx/rx bytes, preshared key, protocol version) are not needed
    if not saw_errno:
        raise UapiProtocolError("UAPI reply ended without an errno line")
    finish(current)
    public = public_from_private_hex(private_hex) if private_hex and set(private_hex) != {"0"} else None
    return Device(public_key=public, listen_port=listen_port, peers=peers, fwmark=fwmark)


def _int(value: str, name: str, lineno: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise UapiProtocolError(f"UAPI reply line {lineno}: {name}={value!r} is not an integer") from None


def format_set(
    add: Iterable[tuple[str, tuple[str, ...]]] = (), remove: Iterable[str] = (), replace_allowed_ips: bool = False
) -> str:
    """One `set=1` request: add/update peers (optionally replacing their allowed-ips) and remove peers."""
    lines = ["set=1"]
    for key, allowed_ips in add:
        lines.append(f"public_key={key_to_hex(key)}")
        if replace_allowed_ips:
            lines.append("replace_allowed_ips=true")
        lines.extend(f"allowed_ip={ip}" for ip in allowed_ips)
    for key in remove:
        lines.append(f"public_key={key_to_hex(key)}")
        lines.append("remove=true")
    return "\n".join(lines) + "\n\n"


def format_readd(peers: Iterable[tuple[str, tuple[str, ...]]]) -> str:
    """One `set=1` request removing each peer and adding it back at once: wireguard-go drops the
    peer at `remove=true`, so the next `public_key=` line with the same key makes a new one."""
    lines = ["set=1"]
    for key, allowed_ips in peers:
        hex_key = key_to_hex(key)
        lines += [f"public_key={hex_key}", "remove=true", f"public_key={hex_key}"]
        lines.extend(f"allowed_ip={ip}" for ip in allowed_ips)
    return "\n".join(lines) + "\n\n"


def format_update(updates: Iterable[PeerUpdate]) -> str:
    """One `set=1` request changing endpoints/keepalives of existing peers, in order."""
    lines = ["set=1"]
    for update in updates:
        lines += [f"public_key={key_to_hex(update.public_key)}", "update_only=true"]
        if update.endpoint is not None:
            lines.append(f"endpoint={update.endpoint}")
        if update.keepalive is not None:
            lines.append(f"persistent_keepalive_interval={update.keepalive}")
    return "\n".join(lines) + "\n\n"


def parse_set_reply(text: str) -> None:
    lines = [line for line in text.split("\n") if line]
    if len(lines) != 1 or not lines[0].startswith("errno="):
        raise UapiProtocolError(f"unexpected reply to set=1: {text[:80]!r}")
    _check_errno(lines[0].partition("=")[2])


class UapiBackend:
    name = "userspace"

    def __init__(self, socket_dir: str = UAPI_SOCKET_DIR):
        self.socket_dir = socket_dir

    def _exchange(self, ifname: str, request: str) -> str:
        path = uapi_socket_path(ifname, self.socket_dir)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(SOCKET_TIMEOUT_S)
        try:
            try:
                sock.connect(path)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise InterfaceMissing(f"interface {ifname}: no userspace WireGuard at {path} ({exc})") from None
            sock.sendall(request.encode())
            chunks: list[bytes] = []
            tail = b""
            while True:  # a reply ends with an empty line
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                tail = (tail + chunk)[-2:]
                if tail == b"\n\n":
                    break
        except OSError as exc:
            raise BackendError(f"interface {ifname}: UAPI socket {path}: {exc}") from None
        finally:
            sock.close()
        reply = b"".join(chunks).decode("ascii", errors="replace")
        if not reply.endswith("\n\n"):
            raise UapiProtocolError(f"interface {ifname}: UAPI reply cut short after {len(reply)} bytes")
        return reply

    def device(self, ifname: str) -> Device:
        return parse_get(self._exchange(ifname, "get=1\n\n"))

    def set_peers(
        self, ifname: str, peers: Iterable[tuple[str, tuple[str, ...]]], replace_allowed_ips: bool = False
    ) -> None:
        peers = list(peers)
        if peers:
            parse_set_reply(self._exchange(ifname, format_set(add=peers, replace_allowed_ips=replace_allowed_ips)))

    def remove_peers(self, ifname: str, keys: Iterable[str]) -> None:
        # wireguard-go ignores remove=true for an unknown key, so "already gone" is no error
        keys = list(keys)
        if keys:
            parse_set_reply(self._exchange(ifname, format_set(remove=keys)))

    def readd_peers(self, ifname: str, peers: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        peers = list(peers)
        if peers:
            parse_set_reply(self._exchange(ifname, format_readd(peers)))

    def update_peers(self, ifname: str, updates: Iterable[PeerUpdate]) -> None:
        # wireguard-go finishes each public_key= block (and sends the keepalive a 0 -> N change
        # asks for) before it reads the next, so the order of the entries holds
        updates = list(updates)
        if updates:
            parse_set_reply(self._exchange(ifname, format_update(updates)))

    def set_fwmark(self, ifname: str, mark: int) -> None:
        parse_set_reply(self._exchange(ifname, f"set=1\nfwmark={mark}\n\n"))
