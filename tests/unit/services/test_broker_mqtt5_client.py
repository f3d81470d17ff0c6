"""mqtt.make_client/connect_async: MQTT 5, and the CONNECT a persistent session needs (no network)."""

from __future__ import annotations

import paho.mqtt.client as paho

from wgmesh import mqtt
from wgmesh.config import MqttConfig

CFG = MqttConfig(broker_url="127.0.0.1", broker_port=1, session_expiry=3600)


def connect_args(client, monkeypatch) -> dict:
    seen = {}
    monkeypatch.setattr(client, "connect_async", lambda *a, **kw: seen.update(kw, args=a))
    mqtt.connect_async(client, CFG)
    return seen


def test_persistent_client_resumes_its_session_from_the_first_connect_and_keeps_it(monkeypatch):
    client = mqtt.make_client(CFG, client_id="gw1", clean_start=False)
    assert client.protocol == paho.MQTTv5
    seen = connect_args(client, monkeypatch)
    # paho's default (clean on the first connect) would drop the keys queued while the worker was down
    assert seen["clean_start"] is False
    assert seen["properties"].SessionExpiryInterval == 3600


def test_clean_client_has_no_session_to_keep(monkeypatch):
    client = mqtt.make_client(CFG)
    seen = connect_args(client, monkeypatch)
    assert seen["clean_start"] is True
    assert not hasattr(seen["properties"], "SessionExpiryInterval")
