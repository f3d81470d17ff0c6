"""PUBACK bridging of BrokerTransport, with paho's network side simulated.

paho's socket is replaced by stubs so the orderings that are rare on a real
link (a PUBACK processed before publish() registered its future, a link lost
while waiting) happen deterministically; the real link is exercised in
tests/integration/services/test_broker_http.py.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from wgmesh import logfilter
from wgmesh.broker.keybuffer import KeyBuffer
from wgmesh.broker.transport import BrokerTransport, PublishError
from wgmesh.config import MqttConfig

SUCCESS = ReasonCode(PacketTypes.PUBACK, "Success")


def make_transport(loop) -> BrokerTransport:
    transport = BrokerTransport(MqttConfig(broker_url="127.0.0.1", broker_port=1), loop, lambda topic, payload: None)
    transport.connected = True
    return transport


def stub_publish(transport, on_publish=None):
    """Replace client.publish; `on_publish(mid)` runs inside it (a PUBACK that wins the race)."""
    mids = iter(range(1, 1000))

    def publish(topic, payload, qos=0, retain=False):
        mid = next(mids)
        if on_publish is not None:
            on_publish(mid)
        return SimpleNamespace(mid=mid, rc=paho.MQTT_ERR_SUCCESS)

    transport.client.publish = publish


@pytest.mark.asyncio
async def test_puback_from_network_thread_settles_the_future():
    transport = make_transport(asyncio.get_running_loop())
    stub_publish(transport)
    task = asyncio.create_task(transport.publish("wireguard/x/all", "k", 1, timeout=5))
    await asyncio.sleep(0.01)
    assert not task.done()  # waits for the PUBACK, does not answer early
    threading.Thread(target=transport._on_publish, args=(transport.client, None, 1, SUCCESS, None)).start()
    await asyncio.wait_for(task, 5)


@pytest.mark.asyncio
async def test_puback_before_registration_is_not_lost():
    transport = make_transport(asyncio.get_running_loop())
    stub_publish(transport, on_publish=lambda mid: transport._on_publish(transport.client, None, mid, SUCCESS, None))
    await transport.publish("wireguard/x/all", "k", 1, timeout=5)  # would time out if the early PUBACK were lost
    assert not transport._early_acks


@pytest.mark.asyncio
async def test_no_puback_is_a_timeout_error():
    transport = make_transport(asyncio.get_running_loop())
    stub_publish(transport)
    with pytest.raises(PublishError, match=r"did not acknowledge within 0\.05s"):
        await transport.publish("wireguard/x/all", "k", 1, timeout=0.05)
    assert transport._pending == {}


@pytest.mark.asyncio
async def test_lost_link_fails_waiting_publishes_at_once():
    transport = make_transport(asyncio.get_running_loop())
    stub_publish(transport)
    task = asyncio.create_task(transport.publish("wireguard/x/all", "k", 1, timeout=60))
    await asyncio.sleep(0.01)
    transport._on_disconnect(
        transport.client, None, None, ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"), None
    )
    with pytest.raises(PublishError, match="connection lost"):
        await asyncio.wait_for(task, 5)
    assert not transport.connected and not transport.synced
    with pytest.raises(PublishError, match="unreachable"):
        await transport.publish("wireguard/x/all", "k", 1, timeout=1)


@pytest.mark.asyncio
async def test_sync_marker_puback_is_not_taken_for_a_key():
    transport = make_transport(asyncio.get_running_loop())
    stub_publish(transport)
    transport._subscribe_mid = 7
    transport._on_subscribe(transport.client, None, 7, [SUCCESS], None)  # publishes the marker as mid 1
    transport._on_publish(transport.client, None, 1, SUCCESS, None)  # its PUBACK
    assert not transport._early_acks  # not parked for the next key to pick up
    with pytest.raises(PublishError, match="did not acknowledge"):
        await transport.publish("wireguard/x/all", "k", 1, timeout=0.05)  # mid 2: no PUBACK, no false OK


def stub_mids(transport, mids):
    """client.publish hands out exactly these mids, in order (paho's counter wraps at 65,535)."""
    it = iter(mids)
    transport.client.publish = lambda topic, payload, qos=0, retain=False: SimpleNamespace(
        mid=next(it), rc=paho.MQTT_ERR_SUCCESS
    )


@pytest.mark.asyncio
async def test_late_puback_never_answers_a_later_publish_with_the_same_mid():
    transport = make_transport(asyncio.get_running_loop())
    stub_mids(transport, [1, 1])  # the second publish reuses mid 1, as after a wrap
    with pytest.raises(PublishError, match="did not acknowledge"):
        await transport.publish("wireguard/x/all", "old", 1, timeout=0.05)
    transport._on_publish(transport.client, None, 1, SUCCESS, None)  # the old key's PUBACK, too late
    with pytest.raises(PublishError, match="did not acknowledge"):  # must not be taken for the new key's
        await transport.publish("wireguard/x/all", "new", 1, timeout=0.05)


@pytest.mark.asyncio
async def test_pubacks_for_unknown_mids_are_not_parked():
    transport = make_transport(asyncio.get_running_loop())
    for mid in range(1, 5000):  # e.g. re-sent messages of an earlier connection
        transport._on_publish(transport.client, None, mid, SUCCESS, None)
    assert len(transport._early_acks) == 0  # nothing parked for a future publish to pick up


REFUSED = ReasonCode(PacketTypes.PUBACK, "Not authorized")  # MQTT 5: what mosquitto's ACL answers


@pytest.mark.asyncio
async def test_refused_puback_is_an_error_also_when_it_beats_the_registration(caplog):
    transport = make_transport(asyncio.get_running_loop())
    stub_publish(transport, on_publish=lambda mid: transport._on_publish(transport.client, None, mid, REFUSED, None))
    caplog.handler.addFilter(logfilter.RepeatFilter(burst=1))  # what the daemons install on every handler
    for dummy in range(3):
        with pytest.raises(PublishError, match=r"refused the key on wireguard/x/all: Not authorized"):
            await transport.publish("wireguard/x/all", "k", 1, timeout=5)
    refusals = [r for r in caplog.records if "Not authorized" in r.getMessage()]
    # One ACL typo refuses every key: all refusals are one repeated line, logged once per window.
    assert len(refusals) == 1


@pytest.mark.asyncio
async def test_buffered_keys_are_published_again_after_connecting_and_their_pubacks_not_parked(tmp_path):
    buffer = KeyBuffer(str(tmp_path / "keys.jsonl"), retention=3600, max_keys=100)
    buffer.load()
    transport = BrokerTransport(
        MqttConfig(broker_url="127.0.0.1", broker_port=1), asyncio.get_running_loop(), lambda t, p: None, buffer
    )
    transport.connected = True
    stub_publish(transport, on_publish=lambda mid: transport._on_publish(transport.client, None, mid, SUCCESS, None))
    await transport.publish("wireguard/x/all", "k1", 1, timeout=5)  # stored: mosquitto and disk
    sent = []

    def publish(topic, payload, qos=0, retain=False):
        sent.append((topic, payload))
        return SimpleNamespace(mid=1, rc=paho.MQTT_ERR_SUCCESS)

    transport.client.publish = publish
    await transport._republish(transport._connects)
    assert sent == [("wireguard/x/all", "k1")]
    transport._on_publish(transport.client, None, 1, SUCCESS, None)  # the republished key's PUBACK
    assert not transport._early_acks and not transport._republished
