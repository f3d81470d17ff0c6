"""BrokerTransport against a real mosquitto: paho runs on the broker's event loop, not a thread.

A thread of paho's own cost a thread hop, a lock and a GIL hand-over for every
publish and every PUBACK (docs/broker.md, "Throughput"). These tests pin that
paho's callbacks run on the loop thread, that the link still survives a
mosquitto restart, and that stop() ends the connection cleanly.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.support.keys import new_key
from wgmesh import protocol
from wgmesh.broker.transport import BrokerTransport, PublishError
from wgmesh.config import MqttConfig

READY_S = 15.0  # readiness wait only (connect, retained state), not a timing assertion


async def until(condition, what: str) -> None:
    async with asyncio.timeout(READY_S):
        while not condition():
            await asyncio.sleep(0.02)
    assert condition(), what


def paho_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("paho-mqtt-client")]


async def started_transport(mq) -> BrokerTransport:
    cfg = MqttConfig(broker_url=mq.host, broker_port=mq.port, keepalive=5)
    transport = BrokerTransport(cfg, asyncio.get_running_loop(), lambda topic, payload: None)
    transport.start()
    await until(lambda: transport.connected and transport.synced, "connected and synced")
    return transport


@pytest.mark.asyncio
async def test_publish_and_its_puback_stay_on_the_event_loop_thread(mosquitto):
    transport = await started_transport(mosquitto)
    try:
        callback_threads = set()
        on_publish = transport.client.on_publish

        def record(*args):
            callback_threads.add(threading.get_ident())
            on_publish(*args)

        transport.client.on_publish = record
        await transport.publish(protocol.topic_key("ffmuc_welt"), new_key(), protocol.QOS_KEY, 5.0)
        assert callback_threads == {threading.get_ident()}, "PUBACK handled on another thread"
        assert paho_threads() == [], "paho runs a network thread of its own"
    finally:
        transport.stop()


@pytest.mark.asyncio
async def test_reconnects_after_a_mosquitto_restart_and_publishes_again(mosquitto):
    transport = await started_transport(mosquitto)
    try:
        mosquitto.stop()
        await until(lambda: not transport.connected, "link loss noticed")
        try:
            await transport.publish(protocol.topic_key("ffmuc_welt"), new_key(), protocol.QOS_KEY, 1.0)
        except PublishError as exc:
            assert "unreachable" in str(exc)
        else:
            raise AssertionError("publish succeeded while mosquitto was down")
        mosquitto.start()
        await until(lambda: transport.connected and transport.synced, "reconnected")
        await transport.publish(protocol.topic_key("ffmuc_welt"), new_key(), protocol.QOS_KEY, 5.0)
    finally:
        transport.stop()


@pytest.mark.asyncio
async def test_stop_disconnects_and_fails_nothing_later(mosquitto):
    transport = await started_transport(mosquitto)
    transport.stop()
    assert transport.client.socket() is None
    assert not paho_threads()
    await asyncio.sleep(0)  # the reconnect task is cancelled, not retrying in the background
    assert transport.client.socket() is None


@pytest.mark.asyncio
async def test_mosquitto_down_at_start_is_named_then_the_link_comes_up(mosquitto):
    """Connecting runs off the loop and is retried with backoff; the loop keeps serving meanwhile."""
    mosquitto.stop()
    cfg = MqttConfig(broker_url=mosquitto.host, broker_port=mosquitto.port, keepalive=5)
    transport = BrokerTransport(cfg, asyncio.get_running_loop(), lambda topic, payload: None)
    transport.start()
    try:
        await until(lambda: (transport.last_error or "").startswith("cannot connect"), "connect failure noticed")
        assert transport.last_error == f"cannot connect to MQTT broker {mosquitto.host}:{mosquitto.port}"
        assert not transport.connected
        mosquitto.start()
        await until(lambda: transport.connected and transport.synced, "connected once mosquitto is up")
        await transport.publish(protocol.topic_key("ffmuc_welt"), new_key(), protocol.QOS_KEY, 5.0)
    finally:
        transport.stop()
