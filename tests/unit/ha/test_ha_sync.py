"""The sync channel's messages: what a standby accepts from its partner, and their size."""

from __future__ import annotations

import json

import pytest

from tests.support.keys import new_key
from wgmesh import protocol
from wgmesh.ha import sync

TOPIC = protocol.topic_ha_peers("pairgw", "member-a", "ffmuc_welt")


def decode(payload, topic=TOPIC):
    return sync.decode(topic, payload if isinstance(payload, bytes) else payload.encode(), "pairgw", ["ffmuc_welt"])


def test_a_message_round_trips():
    keys = [new_key() for dummy in range(3)]
    msg = decode(sync.encode(keys, {keys[0]: "198.51.100.7:51820", keys[1]: "[2001:db8::7]:4242"}, 1_800_000_000.5))
    assert msg == sync.PartnerPeers(
        "ffmuc_welt",
        "member-a",
        1_800_000_000.5,
        frozenset(keys),
        {keys[0]: "198.51.100.7:51820", keys[1]: "[2001:db8::7]:4242"},
    )


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (protocol.topic_ha_peers("other", "member-a", "ffmuc_welt"), "{}", "not a sync topic of identity pairgw"),
        (protocol.topic_ha_peers("pairgw", "member-a", "ffmuc_uml"), "{}", "domain 'ffmuc_uml' is not one of"),
        (TOPIC, "{", "not valid JSON"),
        (TOPIC, b"\xff", "not valid JSON"),
        (TOPIC, "[]", "expected a JSON object"),
        (TOPIC, '{"time": "now", "keys": [], "endpoints": {}}', "time: must be a number"),
        (TOPIC, '{"time": 1, "keys": {}, "endpoints": {}}', "keys: must be a list"),
        (TOPIC, '{"time": 1, "keys": ["x"], "endpoints": {}}', "keys: 'x' is not a WireGuard public key"),
        (TOPIC, '{"time": 1, "keys": [], "endpoints": []}', "must map public keys to endpoints"),
    ],
)
def test_a_bad_message_is_refused_whole_with_the_reason(topic, payload, reason):
    with pytest.raises(sync.SyncError, match=reason.replace("(", r"\(")):
        decode(payload, topic)


def test_a_bad_endpoint_names_the_key():
    key = new_key()
    with pytest.raises(sync.SyncError, match=f"ffmuc_welt.{key[:10]}"):
        decode(json.dumps({"time": 1, "keys": [key], "endpoints": {key: "198.51.100.7"}}))


def test_the_size_of_a_message_with_1000_peers():
    # docs/ha.md quotes this: 1,000 keys, all with an IPv6 endpoint (the longer kind)
    keys = [new_key() for dummy in range(1000)]
    payload = sync.encode(keys, {k: f"[2001:db8::{i:x}]:{40000 + i}" for i, k in enumerate(keys)}, 1_800_000_000.0)
    print(f"\n1,000 keys with endpoints: {len(payload)} bytes; keys only: {len(sync.encode(keys, {}, 0))} bytes")
    assert len(decode(payload).keys) == 1000
    assert 100_000 < len(payload) < 120_000  # about 47 bytes per key, 30 more per endpoint
