"""The wireguard-go UAPI text protocol: parsing `get=1` replies and writing `set=1` requests."""

from __future__ import annotations

import base64
import builtins
import shutil

import pytest

from wgmesh.worker.backend import PeerUpdate
from wgmesh.worker.uapi import (
    UapiProtocolError,
    format_readd,
    format_set,
    format_update,
    hex_to_key,
    key_to_hex,
    parse_get,
    parse_set_reply,
    public_from_private_hex,
)

KEY_A = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
KEY_B = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="
# RFC 7748 section 6.1: Alice's X25519 private and public key
PRIVATE_HEX = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
PUBLIC_B64 = base64.b64encode(
    bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
).decode()


def reply(*lines: str) -> str:
    return "\n".join(lines) + "\n\n"


def test_key_hex_round_trip():
    assert hex_to_key(key_to_hex(KEY_A)) == KEY_A
    assert key_to_hex(KEY_A) == base64.b64decode(KEY_A).hex()


def test_parse_device_and_several_peers():
    text = reply(
        f"private_key={PRIVATE_HEX}",
        "listen_port=51820",
        f"public_key={key_to_hex(KEY_A)}",
        "preshared_key=" + "0" * 64,
        "protocol_version=1",
        "endpoint=[2001:db8::1]:4242",
        "last_handshake_time_sec=1700000000",
        "last_handshake_time_nsec=250000000",
        "tx_bytes=10",
        "rx_bytes=20",
        "persistent_keepalive_interval=0",
        "allowed_ip=fe80::26f:79ff:fe39:ac8b/128",
        "allowed_ip=10.0.0.0/8",
        f"public_key={key_to_hex(KEY_B)}",
        "last_handshake_time_sec=0",
        "last_handshake_time_nsec=0",
        "errno=0",
    )
    device = parse_get(text)
    assert device.public_key == PUBLIC_B64  # derived from the private key, which is not returned
    assert device.listen_port == 51820
    assert set(device.peers) == {KEY_A, KEY_B}
    a, b = device.peers[KEY_A], device.peers[KEY_B]
    assert a.allowed_ips == ("fe80::26f:79ff:fe39:ac8b/128", "10.0.0.0/8")
    assert a.last_handshake == pytest.approx(1700000000.25)
    assert a.endpoint == "[2001:db8::1]:4242"
    assert b.allowed_ips == () and b.last_handshake == 0 and b.endpoint is None


def test_device_without_private_key_has_no_public_key():
    device = parse_get(reply("listen_port=0", "errno=0"))
    assert device.public_key is None and device.peers == {}


@pytest.mark.parametrize(
    "text, message",
    [
        (reply("listen_port=1"), "without an errno"),
        (reply("errno=-22"), "errno=-22"),
        (reply("listen_port=1", "garbage", "errno=0"), "no '='"),
        (reply("errno=0", "listen_port=1"), "after the errno"),
        (reply("listen_port=abc", "errno=0"), "not an integer"),
        (reply("public_key=abcd", "errno=0"), "2 bytes"),
        (reply(f"public_key={key_to_hex(KEY_A)}", "last_handshake_time_sec=x", "errno=0"), "not an integer"),
    ],
)
def test_parse_get_rejects_bad_replies(text, message):
    with pytest.raises(UapiProtocolError, match=message):
        parse_get(text)


def test_format_set_adds_and_removes():
    text = format_set(add=[(KEY_A, ("fe80::1/128",))], remove=[KEY_B])
    assert text == (
        "set=1\n"
        f"public_key={key_to_hex(KEY_A)}\n"
        "allowed_ip=fe80::1/128\n"
        f"public_key={key_to_hex(KEY_B)}\n"
        "remove=true\n"
        "\n"
    )
    assert "endpoint" not in text and "keepalive" not in text  # nodes are never dialled


def test_format_readd_removes_then_adds_each_peer_in_one_request():
    text = format_readd([(KEY_A, ("fe80::1/128",)), (KEY_B, ())])
    a, b = key_to_hex(KEY_A), key_to_hex(KEY_B)
    assert text == (
        f"set=1\npublic_key={a}\nremove=true\npublic_key={a}\nallowed_ip=fe80::1/128\n"
        f"public_key={b}\nremove=true\npublic_key={b}\n\n"
    )


def test_format_set_replaces_allowed_ips_only_when_asked():
    text = format_set(add=[(KEY_A, ("fe80::1/128",)), (KEY_B, ())], replace_allowed_ips=True)
    assert text.count("replace_allowed_ips=true\n") == 2
    assert text.index("replace_allowed_ips") < text.index("allowed_ip=fe80::1/128")  # before the new list


def test_format_set_refuses_a_key_that_is_not_32_bytes():
    with pytest.raises(ValueError):
        format_set(add=[(base64.b64encode(b"short").decode(), ())])


def test_set_reply():
    parse_set_reply("errno=0\n\n")
    with pytest.raises(UapiProtocolError, match="errno=-2"):
        parse_set_reply("errno=-2\n\n")
    with pytest.raises(UapiProtocolError, match="unexpected"):
        parse_set_reply("hello\n\n")


def test_public_key_without_cryptography_falls_back_to_wg_pubkey(monkeypatch):
    if shutil.which("wg") is None:
        pytest.skip("wg not installed (Debian package wireguard-tools)")
    real_import = builtins.__import__

    def no_cryptography(name, *args, **kwargs):
        if name.startswith("cryptography"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cryptography)
    assert public_from_private_hex(PRIVATE_HEX) == PUBLIC_B64


def test_update_request_keeps_order_and_never_adds_a_peer():
    text = format_update(
        [
            PeerUpdate(KEY_A, endpoint="[2001:db8::1]:4242"),
            PeerUpdate(KEY_A, keepalive=25),
            PeerUpdate(KEY_B, keepalive=0),
        ]
    )
    assert text == (
        f"set=1\npublic_key={key_to_hex(KEY_A)}\nupdate_only=true\nendpoint=[2001:db8::1]:4242\n"
        f"public_key={key_to_hex(KEY_A)}\nupdate_only=true\npersistent_keepalive_interval=25\n"
        f"public_key={key_to_hex(KEY_B)}\nupdate_only=true\npersistent_keepalive_interval=0\n\n"
    )


def test_parse_keepalive_and_fwmark():
    device = parse_get(
        reply(
            "listen_port=1",
            "fwmark=20864",
            f"public_key={key_to_hex(KEY_A)}",
            "persistent_keepalive_interval=25",
            f"public_key={key_to_hex(KEY_B)}",
            "errno=0",
        )
    )
    assert device.fwmark == 20864
    assert device.peers[KEY_A].keepalive == 25
    assert device.peers[KEY_B].keepalive == 0
