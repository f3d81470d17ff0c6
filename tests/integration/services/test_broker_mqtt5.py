"""The broker over MQTT 5 against a real mosquitto: PUBACK reason codes are honoured."""

from __future__ import annotations

from tests.support.broker import exchange
from tests.support.keys import new_key
from wgmesh.protocol import PATH_V1_EXCHANGE as V1

# The documented broker ACL with a typo in the key topic: mosquitto refuses every key.
TYPO_ACL = (
    "user broker\n"
    "topic write wireguard/+/al\n"
    "topic read wireguard-worker/#\n"
    "topic read wireguard-metrics/#\n"
    "topic readwrite wgmesh-broker/#\n"
)


def test_a_key_the_acl_refuses_is_503_and_logged_never_200(mosquitto_factory, broker_factory):
    mq = mosquitto_factory(users={"broker": "b"}, acl=TYPO_ACL)
    broker = broker_factory(mq, mqtt={"username": "broker", "password": "b"})
    broker.wait_healthy()
    # With MQTT 3.1.1 mosquitto PUBACKs the denied publish and the key is silently dropped.
    status, data = exchange(broker, V1, "ffmuc_welt", new_key())
    assert status == 503, data
    assert "Not authorized" in data["error"]["message"]
    log = broker.log()
    assert "wireguard/ffmuc_welt/all" in log and "Not authorized" in log, log[-2000:]
