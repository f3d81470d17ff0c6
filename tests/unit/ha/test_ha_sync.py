"""The sync channel's messages: what a standby accepts from its partner, and their size."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.keys import new_key
from wgmesh import protocol
from wgmesh.ha import sync

TOPIC = protocol.topic_ha_peers("pairgw", "member-a", "ffmuc_welt")


def decode(payload, topic=TOPIC):
    return sync.decode(topic, payload if isinstance(payload, bytes) else payload.encode(), "pairgw", ["ffmuc_welt"])


def test_a_message_round_trips():
    keys = [new_key() for dummy in range(3)]
    learnt = {keys[0]: "198.51.100.7:51820", keys[1]: "[2001:db8::7]:4242"}
    gone = new_key()
    msg = decode(sync.encode(keys, learnt, 1_800_000_000.5, {gone: 1_799_999_000.0}))
    assert msg == sync.PartnerPeers(
        "ffmuc_welt",
        "member-a",
        1_800_000_000.5,
        frozenset(keys),
        learnt,
        {gone: 1_799_999_000.0},
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
        (TOPIC, '{"time": 1, "keys": [], "endpoints": {}}', "dropped: must map public keys to times"),
        (TOPIC, '{"time": 1, "keys": [], "endpoints": {}, "dropped": {"x": 1}}', "dropped: 'x' is not a WireGuard"),
        (TOPIC, '{"time": 1, "keys": [], "endpoints": [], "dropped": {}}', "must map public keys to endpoints"),
    ],
)
def test_a_bad_message_is_refused_whole_with_the_reason(topic, payload, reason):
    with pytest.raises(sync.SyncError, match=reason.replace("(", r"\(")):
        decode(payload, topic)


def test_a_bad_endpoint_names_the_key():
    key = new_key()
    with pytest.raises(sync.SyncError, match=re.escape(f"ffmuc_welt.{key[:10]}")):
        decode(json.dumps({"time": 1, "keys": [key], "endpoints": {key: "198.51.100.7"}, "dropped": {}}))


def test_the_size_of_a_message_with_1000_peers():
    # docs/ha.md quotes this: 1,000 keys, all with an IPv6 endpoint (the longer kind), 100 dropped
    keys = [new_key() for dummy in range(1000)]
    learnt = {k: f"[2001:db8::{i:x}]:{40000 + i}" for i, k in enumerate(keys)}
    dropped = {new_key(): 1_799_990_000.123 for dummy in range(100)}
    payload = sync.encode(keys, learnt, 1_800_000_000.0, dropped)
    bare = sync.encode(keys, {}, 0, {})
    print(f"\n1,000 keys with endpoints and 100 drops: {len(payload)} bytes; keys only: {len(bare)} bytes")
    assert len(decode(payload).keys) == 1000
    assert 100_000 < len(payload) < 130_000  # about 47 bytes per key, 30 more per endpoint, 62 per drop
