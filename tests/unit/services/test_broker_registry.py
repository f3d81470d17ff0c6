"""Gateway choice (the reference cases of docs/broker.md "Gateway choice (v2)") and the worker registry."""

from __future__ import annotations

import json

import pytest

from wgmesh.broker.registry import Registry

DATA = {
    "ExternalAddress": "gw1.example.net",
    "Port": 51820,
    "PublicKey": "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg=",
    "LinkAddress": "fe80::27c:16ff:fec0:6c74/64",
}


def feed(reg: Registry, worker: str, status: str | None = "1", **peers_by_domain: int) -> None:
    """Deliver what a worker publishes, through the same path as MQTT messages."""
    if status is not None:
        reg.handle(f"wireguard-worker/{worker}/status", status.encode())
    for domain, peers in peers_by_domain.items():
        reg.handle(f"wireguard-metrics/{domain}/{worker}/connected_peers", str(peers).encode())


def registry(weights: dict[str, float] | None = None) -> Registry:
    weights = weights or {}
    return Registry(lambda name: weights.get(name, 1))


def test_equal_weights_fewer_peers_wins():
    reg = registry()
    feed(reg, "w1", ffmuc_a=20)
    feed(reg, "w2", ffmuc_a=19)
    assert reg.choose("ffmuc_a") == "w2"


def test_peers_count_over_all_domains():
    reg = registry()
    feed(reg, "w1", ffmuc_a=25, ffmuc_b=5)
    feed(reg, "w2", ffmuc_a=20, ffmuc_b=20)
    assert reg.choose("ffmuc_a") == "w1"  # 30 < 40 in total, although 25 > 20 in ffmuc_a


def test_weights_shift_the_target():
    reg = registry({"w84": 84, "w42": 42})
    feed(reg, "w84", ffmuc_a=21)
    feed(reg, "w42", ffmuc_a=19)
    assert reg.choose("ffmuc_a") == "w84"


def test_none_online():
    reg = registry()
    assert reg.choose("ffmuc_a") is None
    feed(reg, "w1", status="0", ffmuc_a=3)  # offline worker
    feed(reg, "w2", ffmuc_a=-1)  # online, but offline for the domain
    feed(reg, "w3", ffmuc_b=1)  # online, no metrics for the domain
    assert reg.choose("ffmuc_a") is None
    assert reg.choose("ffmuc_b") == "w3"


def test_status_before_metrics_and_status_messages_as_integers():
    reg = registry()
    feed(reg, "w1", status=None, ffmuc_a=0)
    assert reg.choose("ffmuc_a") is None  # metrics alone do not make a worker online
    feed(reg, "w1", status="2")
    assert reg.choose("ffmuc_a") == "w1"
    reg.handle("wireguard-worker/w1/status", b"")  # retained status cleared
    assert reg.choose("ffmuc_a") is None


def test_local_plus_one_until_next_metrics():
    reg = registry()
    feed(reg, "w1", ffmuc_a=10)
    feed(reg, "w2", ffmuc_a=10)
    first = reg.choose("ffmuc_a")
    reg.note_assigned(first, "ffmuc_a")
    second = reg.choose("ffmuc_a")
    assert second != first  # the +1 tips the balance to the other worker
    reg.note_assigned(second, "ffmuc_a")
    reg.note_assigned(second, "ffmuc_a")
    assert reg.choose("ffmuc_a") == first
    feed(reg, second, status=None, ffmuc_a=10)  # its next metrics replace the local count
    assert reg.choose("ffmuc_a") == second  # 10 vs 11: the tie-break by name no longer matters


def test_malformed_messages_are_ignored(caplog):
    reg = registry()
    feed(reg, "w1", ffmuc_a=4)
    reg.handle("wireguard-metrics/ffmuc_a/w1/connected_peers", b"lots")
    reg.handle("wireguard-worker/w1/status", b"up")
    reg.handle("wireguard-worker/w1/ffmuc_a/data", b"{not json")
    reg.handle("wireguard-worker/w1/ffmuc_a/data", b"[1, 2]")
    reg.handle("some/other/topic", b"x")
    assert reg.workers["w1"].peers == {"ffmuc_a": 4}
    assert reg.workers["w1"].online
    assert reg.endpoint("w1", "ffmuc_a") is None
    assert len([r for r in caplog.records if "ignoring MQTT message" in r.message]) == 4


def test_endpoint_from_data_message():
    reg = registry()
    reg.handle("wireguard-worker/w1/ffmuc_a/data", json.dumps(DATA).encode())
    ep = reg.endpoint("w1", "ffmuc_a")
    assert ep.as_json() == {
        "Address": "gw1.example.net",
        "Port": "51820",  # a string on the wire, as wgkex sends it
        "AllowedIPs": ["fe80::27c:16ff:fec0:6c74"],  # bare, no prefix length
        "PublicKey": DATA["PublicKey"],
    }
    assert reg.endpoint("w1", "ffmuc_b") is None
    assert reg.endpoint("nobody", "ffmuc_a") is None


def test_endpoint_follows_every_new_data_message():
    """The Endpoint is built once per data message (not per request); a new message replaces it."""
    reg = registry()
    reg.endpoint("w1", "ffmuc_a")  # asked before any data: no answer kept for later
    reg.handle("wireguard-worker/w1/ffmuc_a/data", json.dumps(DATA).encode())
    assert reg.endpoint("w1", "ffmuc_a").address == "gw1.example.net"
    moved = {**DATA, "ExternalAddress": "gw1-new.example.net", "LinkAddress": "fe80::1/64"}
    reg.handle("wireguard-worker/w1/ffmuc_a/data", json.dumps(moved).encode())
    assert reg.endpoint("w1", "ffmuc_a").as_json()["Address"] == "gw1-new.example.net"
    assert reg.endpoint("w1", "ffmuc_a").allowed_ips == ("fe80::1",)
    reg.handle("wireguard-worker/w1/ffmuc_a/data", b"")  # retained message cleared
    assert reg.endpoint("w1", "ffmuc_a") is None


@pytest.mark.parametrize("missing", ["ExternalAddress", "Port", "PublicKey", "LinkAddress"])
def test_incomplete_data_gives_no_endpoint(missing):
    reg = registry()
    data = {k: v for k, v in DATA.items() if k != missing}
    reg.handle("wireguard-worker/w1/ffmuc_a/data", json.dumps(data).encode())
    assert reg.endpoint("w1", "ffmuc_a") is None
