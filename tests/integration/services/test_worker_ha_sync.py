"""The sync channel of an HA pair (docs/ha.md, "The sync channel").

Two members share the identity `pairgw` (one MQTT user, two client ids, the mqtt role's real
ACL) and run a worker each in a namespace with wireguard-go; the state files stand in for
keepalived. A node is a second wireguard-go interface in the active member's namespace that
handshakes with it over loopback, so the active member has a peer with a recent handshake and
an endpoint. The standby must learn keys and endpoints, write the endpoints to its learnt
endpoints file and apply none of them, follow its partner's removals, and say when it is
synced; bad payloads are logged and change nothing.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.gateway import PREFIX
from tests.support.ha_pair import (
    CLIENT_IDS,
    IDENTITY,
    PASSWORDS,
    Node,
    endpoints_of,
    pair_acl,
    set_role,
    start_member,
)
from tests.support.keys import new_key
from tests.support.procs import wait_until
from wgmesh import mqtt, protocol
from wgmesh.config import MqttConfig
from wgmesh.ha import state, sync


@pytest.fixture
def pair_broker(mosquitto_factory, domain):
    return mosquitto_factory(users=dict(PASSWORDS), acl=pair_acl(domain))


@pytest.fixture
def nodes():
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def sync_files(gw) -> dict:
    return {
        "ha_endpoints_file": str(gw.workdir / f"endpoints-{gw.id}.json"),
        "ha_synced_file": str(gw.workdir / f"synced-{gw.id}"),
    }


def learnt(gw, domain) -> dict[str, str]:
    try:
        return json.loads((gw.workdir / f"endpoints-{gw.id}.json").read_text())["domains"].get(domain, {})
    except (OSError, ValueError):
        return {}


def synced(gw) -> bool:
    return (gw.workdir / f"synced-{gw.id}").exists()


def pair_client(port: int, client_id: str):
    """An MQTT 5 client of the pair's user (as a member connects), to publish by hand; its
    `acks` maps each message id to the PUBACK's reason code."""
    cfg = MqttConfig(broker_url="127.0.0.1", broker_port=port, username=IDENTITY, password=PASSWORDS[IDENTITY])
    client = mqtt.make_client(cfg, client_id=client_id)
    client.acks = {}
    client.on_publish = lambda c, userdata, mid, reason_code, properties: c.acks.__setitem__(mid, reason_code)
    mqtt.connect_async(client, cfg)
    client.loop_start()
    wait_until(client.is_connected, what="the pair client connected")
    return client


def publish_keys(port: int, domain: str, keys: list[str]) -> None:
    cfg = MqttConfig(broker_url="127.0.0.1", broker_port=port, username="broker1", password=PASSWORDS["broker1"])
    client = mqtt.make_client(cfg, client_id="h6-keys")
    mqtt.connect_async(client, cfg)
    client.loop_start()
    try:
        wait_until(client.is_connected, what="the key publisher connected")
        for info in [client.publish(protocol.topic_key(domain), k, qos=1) for k in keys]:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_for_retained_set(port: int, domain: str, sender: str, keys: list[str]) -> None:
    """Until the broker holds `sender`'s retained set with every key: the active member sends a
    change at its next check (HA_SYNC_INTERVAL_S), not when the key arrives. Reads as the other
    member's client id, as the ACL allows; disconnects before that member starts."""
    topic = protocol.topic_ha_peers(IDENTITY, sender, domain)
    heard: list[sync.PartnerPeers] = []
    other = next(cid for cid in CLIENT_IDS if cid != sender)
    client = pair_client(port, other)
    client.on_message = lambda c, userdata, msg: heard.append(sync.decode(msg.topic, msg.payload, IDENTITY, [domain]))
    try:
        client.subscribe(topic, qos=1)
        wait_until(
            lambda: heard and set(keys) <= set(heard[-1].keys),
            what=f"{sender}'s retained set with the {len(keys)} keys on {topic}",
        )
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_rebuilt_standby_gets_its_partners_keys_and_endpoints_but_applies_no_endpoint(
    gateways, pair_broker, domain, nodes
):
    a, b = gateways(), gateways()
    start_member(a, pair_broker.port, domain, CLIENT_IDS[0], state.ACTIVE, **sync_files(a))
    wait_until(lambda: "MQTT connected" in a.log_text(), what=f"a connected\n{a.log_text()}")
    node = Node(a).start()
    nodes.append(node)
    keys = [new_key() for dummy in range(20)]
    publish_keys(pair_broker.port, domain, [node.public_key, *keys])  # before b ever connected
    wait_until(lambda: a.has_all([node.public_key, *keys]), what=f"keys on a\n{a.log_text()}")
    node.dial()
    wait_until(lambda: endpoints_of(a).get(node.public_key) == node.endpoint, what="the node's handshake with a")
    started = time.monotonic()
    start_member(b, pair_broker.port, domain, CLIENT_IDS[1], state.STANDBY, **sync_files(b))  # from scratch
    wait_until(lambda: b.has_all([node.public_key, *keys]), what=f"the partner's keys on b\n{b.log_text()}")
    wait_until(lambda: learnt(b, domain).get(node.public_key) == node.endpoint, what=f"b learnt\n{b.log_text()}")
    wait_until(lambda: synced(b), what=f"b's synced marker\n{b.log_text()}")
    print(f"\nrebuilt standby: the partner's 21 keys and the endpoint after {time.monotonic() - started:.2f} s")
    assert endpoints_of(b) == {}, "a standby must not send to what it learnt"
    assert not synced(a), "an active member hears no partner: no marker"


def test_a_member_demoted_late_follows_what_its_partner_sent_while_it_was_still_active(gateways, pair_broker, domain):
    # Seen in molecule/ha's rolling maintenance: the member that handed over restarted its worker
    # while its state file still said active, so the partner's retained set arrived then and was
    # ignored; demoted a moment later, it waited for a message the partner had no reason to send
    # (nothing changed), and never became synced.
    a, b = gateways(), gateways()
    start_member(b, pair_broker.port, domain, CLIENT_IDS[1], state.ACTIVE, **sync_files(b))
    wait_until(lambda: "MQTT connected" in b.log_text(), what=f"b connected\n{b.log_text()}")
    keys = [new_key() for dummy in range(5)]
    publish_keys(pair_broker.port, domain, keys)
    wait_until(lambda: b.has_all(keys), what=f"keys on b\n{b.log_text()}")
    wait_for_retained_set(pair_broker.port, domain, CLIENT_IDS[1], keys)
    start_member(a, pair_broker.port, domain, CLIENT_IDS[0], state.ACTIVE, **sync_files(a))  # still "active"
    wait_until(lambda: "MQTT connected" in a.log_text(), what=f"a connected\n{a.log_text()}")
    time.sleep(1)  # b's retained message reached a while a was active
    assert not synced(a)
    set_role(a, state.STANDBY)
    wait_until(lambda: synced(a), what=f"a's synced marker after its demotion\n{a.log_text()}")
    assert a.has_all(keys)  # its partner's set, which a (a new session) never got from the broker


def test_the_standby_follows_its_partners_removals_but_never_its_own_silence(gateways, pair_broker, domain, nodes):
    a, b = gateways(), gateways()
    stale_after = 10  # long enough for the node's first handshake on a loaded host
    fast_cleanup = {"reconcile_interval": 1, "stale_after": stale_after, "grace_period": 0}
    start_member(a, pair_broker.port, domain, CLIENT_IDS[0], state.ACTIVE, **sync_files(a), **fast_cleanup)
    start_member(b, pair_broker.port, domain, CLIENT_IDS[1], state.STANDBY, **sync_files(b), **fast_cleanup)
    for gw in (a, b):
        wait_until(lambda gw=gw: "MQTT connected" in gw.log_text(), what=f"{gw.id} connected\n{gw.log_text()}")
    node = Node(a).start()
    nodes.append(node)
    silent = [new_key() for dummy in range(10)]
    publish_keys(pair_broker.port, domain, [node.public_key, *silent])
    wait_until(lambda: node.public_key in a.peers(), what="the node's key on a")
    node.dial()  # only the node handshakes (with a); b sees no handshake from anyone
    wait_until(lambda: a.has_all([node.public_key, *silent]) and b.has_all([node.public_key, *silent]), what="keys")
    wait_until(lambda: a.peers()[node.public_key]["handshake"] > 0, what="the node's handshake with a")
    node.keep_handshaking(every=3)
    wait_until(lambda: not any(k in a.peers() for k in silent), what=f"a drops the silent keys\n{a.log_text()}")
    dropped = time.monotonic()
    wait_until(lambda: not any(k in b.peers() for k in silent), what=f"b follows\n{b.log_text()}")
    print(f"\nstandby followed the removal of 10 keys after {time.monotonic() - dropped:.2f} s")
    time.sleep(stale_after)  # past stale_after for b's own view: the node never handshook with b
    assert node.public_key in b.peers(), "a standby must not remove a peer because it sees no handshake"
    assert b.has_all([node.public_key])


def test_bad_sync_payloads_are_logged_and_change_nothing(gateways, pair_broker, domain):
    b = gateways()
    start_member(b, pair_broker.port, domain, CLIENT_IDS[1], state.STANDBY, **sync_files(b))
    wait_until(lambda: "MQTT connected" in b.log_text(), what=f"b connected\n{b.log_text()}")
    good_key = new_key()
    bad = {  # at most 5 lines of one kind per minute pass the log's repeat filter: 4 here and one below
        "not JSON": "{",
        "keys not a list": json.dumps({"time": time.time(), "keys": good_key, "endpoints": {}}),
        "a bad key": json.dumps({"time": time.time(), "keys": [good_key, "nope"], "endpoints": {}}),
        "a bad endpoint": json.dumps({"time": time.time(), "keys": [good_key], "endpoints": {good_key: "x:1"}}),
    }
    other = pair_client(pair_broker.port, CLIENT_IDS[0])  # the partner's client id, as the ACL allows
    try:
        topic = protocol.topic_ha_peers(IDENTITY, CLIENT_IDS[0], domain)
        for payload in bad.values():
            other.publish(topic, payload, qos=1, retain=True).wait_for_publish(timeout=10)
        foreign = protocol.topic_ha_peers(IDENTITY, CLIENT_IDS[0], f"{PREFIX}other")  # not b's domain
        ok = json.dumps({"time": time.time(), "keys": [good_key], "endpoints": {}})
        other.publish(foreign, ok, qos=1).wait_for_publish(timeout=10)
        wait_until(
            lambda: b.log_text().count(f"{topic}: ") >= len(bad), what=f"a log line per bad payload\n{b.log_text()}"
        )
        wait_until(lambda: foreign in b.log_text(), what=f"the foreign domain named\n{b.log_text()}")
        assert b.peers() == {} and learnt(b, domain) == {} and not synced(b)
        # the partner cannot write under b's client id: MQTT 5 PUBACK says "Not authorized"
        refused = other.publish(protocol.topic_ha_peers(IDENTITY, CLIENT_IDS[1], domain), ok, qos=1)
        refused.wait_for_publish(timeout=10)
        assert wait_until(lambda: other.acks.get(refused.mid)).getName() == "Not authorized"
    finally:
        other.disconnect()
        other.loop_stop()
    assert b.worker_proc.poll() is None
