"""The mqtt role's ACL template against the topic names of src/wgmesh/protocol.py.

The template is a second runtime for the topic names: rendering it here and
comparing every grant with protocol.py's constants keeps the two from drifting.
"""

from __future__ import annotations

import pytest
from paho.mqtt.client import topic_matches_sub

from tests.support.mqtt_acl import ROLE, render_acl
from wgmesh import protocol

DOMAINS = ["ffmuc_welt", "ffmuc_uml"]


def grants(acl: str) -> dict[str, set[tuple[str, str]]]:
    """{user: {(access, topic)}} from an ACL file; lines outside a user block go under None,
    `pattern` lines (for every user, wherever they stand) under "pattern"."""
    result: dict[str, set[tuple[str, str]]] = {}
    user = None
    for line in acl.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user":
            user = words[1]
            result.setdefault(user, set())
        elif words[0] == "pattern":
            result.setdefault("pattern", set()).add((words[1], words[2]))
        else:
            assert words[0] == "topic", f"only per-user topic grants are expected, got {line!r}"
            result.setdefault(user, set()).add((words[1], words[2]))
    return result


@pytest.fixture
def acl() -> dict[str, set[tuple[str, str]]]:
    return grants(
        render_acl(
            # Domains as wgmesh_domains gives them (dicts) and as plain names.
            mqtt_domains=[{"name": DOMAINS[0], "seed": "x"}, DOMAINS[1]],
            mqtt_brokers=[{"name": "broker1", "client_id": "broker1-a"}, {"name": "broker2"}],
            mqtt_gateways=[{"name": "gw1", "client_ids": ["gw1a", "gw1b"]}, {"name": "gw2"}],
        )
    )


def test_broker_grants_are_the_protocol_topics(acl):
    for name, client_id in (("broker1", "broker1-a"), ("broker2", "broker2")):
        expected = {("write", protocol.topic_key(d)) for d in DOMAINS} | {
            ("read", protocol.TOPIC_STATUS_SUB),
            ("read", protocol.TOPIC_DATA_SUB),
            ("read", protocol.TOPIC_METRICS_SUB),
            ("readwrite", protocol.TOPIC_BROKER_SYNC.format(client_id=client_id)),
        }
        assert acl[name] == expected


def test_gateway_grants_are_its_own_protocol_topics(acl):
    for name in ("gw1", "gw2"):
        expected = {("read", protocol.topic_key(d)) for d in DOMAINS} | {("readwrite", protocol.topic_status(name))}
        expected |= {("write", protocol.topic_data(name, d)) for d in DOMAINS}
        expected |= {("write", protocol.topic_metrics(d, name)) for d in DOMAINS}
        assert acl[name] == expected


def test_nothing_is_granted_outside_a_user_block_but_the_ha_sync_patterns(acl):
    assert None not in acl
    assert set(acl) == {"broker1", "broker2", "gw1", "gw2", "wgmesh-mqtt-admin", "pattern"}


def test_an_ha_member_writes_only_under_its_own_identity_and_client_id_and_reads_its_pair(acl):
    # mosquitto fills in %u (user = the pair's identity) and %c (the member's client id)
    assert acl["pattern"] == {("write", "wgmesh-ha/%u/%c/#"), ("read", "wgmesh-ha/%u/#")}
    assert topic_matches_sub("wgmesh-ha/%u/%c/#", protocol.topic_ha_peers("%u", "%c", DOMAINS[0]))
    assert topic_matches_sub("wgmesh-ha/%u/#", protocol.TOPIC_HA_PEERS_SUB.format(identity="%u").replace("+", "x"))


def test_gateway_may_not_publish_keys(acl):
    for name in ("gw1", "gw2"):
        assert not [t for access, t in acl[name] if access != "read" and t.startswith("wireguard/")]


def test_the_admin_user_may_clear_a_removed_pairs_sync_topics(acl):
    # decommissioning clears them: they hold the nodes' endpoints and would stay retained for ever
    assert ("readwrite", "wgmesh-ha/#") in acl["wgmesh-mqtt-admin"]
    run = (ROLE / "tasks" / "run.yml").read_text()
    assert "wgmesh-ha/{{ item.name }}/#" in run
