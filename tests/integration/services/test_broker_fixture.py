"""The mosquitto fixture and the MQTT client factory against a real mosquitto."""

from __future__ import annotations

import queue
import threading

from wgmesh import mqtt
from wgmesh.config import MqttConfig


def _connect(mq, **kw):
    cfg = MqttConfig(broker_url=mq.host, broker_port=mq.port, keepalive=5, **kw)
    client = mqtt.make_client(cfg)
    result: queue.Queue = queue.Queue()
    client.on_connect = lambda c, u, flags, rc, props: result.put(rc)
    mqtt.connect_async(client, cfg)
    client.loop_start()
    return client, result


def _persistent_subscriber(mq, topic: str, got: queue.Queue):
    """A connected QoS 1 subscriber with a fixed client id and a session kept across connections."""
    cfg = MqttConfig(broker_url=mq.host, broker_port=mq.port)
    connected = threading.Event()

    def on_connect(c, u, flags, rc, props):
        c.subscribe(topic, qos=1)
        connected.set()

    sub = mqtt.make_client(cfg, client_id="h5-fixture-sub", clean_start=False)
    sub.on_connect = on_connect
    sub.on_message = lambda c, u, msg: got.put(msg.payload)
    mqtt.connect_async(sub, cfg)
    sub.loop_start()
    assert connected.wait(10), "subscriber could not connect to mosquitto"
    return sub


def test_publish_survives_mosquitto_restart_with_persistent_session(mosquitto):
    # A subscriber with a persistent session is away while a QoS 1 message is
    # published and while mosquitto restarts; it must still get the message.
    got: queue.Queue = queue.Queue()
    sub = _persistent_subscriber(mosquitto, "t/#", got)
    sub.disconnect()
    sub.loop_stop()

    pub, result = _connect(mosquitto)
    assert result.get(timeout=10).value == 0
    info = pub.publish("t/x", b"kept", qos=1)
    info.wait_for_publish(timeout=10)
    assert info.is_published()
    pub.disconnect()
    pub.loop_stop()

    mosquitto.restart()
    assert mosquitto.running

    sub2 = _persistent_subscriber(mosquitto, "t/#", got)
    try:
        assert got.get(timeout=10) == b"kept"
    finally:
        sub2.disconnect()
        sub2.loop_stop()


def test_password_auth(mosquitto_factory):
    mq = mosquitto_factory(users={"broker": "s3cret"})
    good, result = _connect(mq, username="broker", password="s3cret")
    try:
        assert result.get(timeout=10).value == 0
    finally:
        good.disconnect()
        good.loop_stop()
    bad, result = _connect(mq, username="broker", password="wrong")
    try:
        rc = result.get(timeout=10)
        assert rc.is_failure
        assert "check mqtt.username/mqtt.password" in mqtt.describe_connack(rc)
    finally:
        bad.disconnect()
        bad.loop_stop()
