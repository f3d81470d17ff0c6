"""paho-mqtt client factory shared by broker and worker (the MQTT transport layer).

Both daemons get the same auth, TLS, keepalive and reconnect behaviour from
one place. We speak MQTT 3.1.1 like wgkex: a persistent session is simply
``clean_start=False`` with a stable client id, and mosquitto keeps the QoS 1
messages queued for it while it is away (needs ``persistence true``).

Callers install their callbacks, then ``connect_async(client, cfg)`` and
``client.loop_start()``; subscribe in ``on_connect`` so every reconnect
subscribes again.
"""

from __future__ import annotations

import ssl
import uuid

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from wgmesh.config import MqttConfig

RECONNECT_MIN_DELAY_S = 1
RECONNECT_MAX_DELAY_S = 30

# paho's CONNACK reason codes a restart cannot fix: report them clearly.
AUTH_FAILURES = {
    4: "bad user name or password",
    5: "not authorised",
    134: "bad user name or password",
    135: "not authorised",
}


def make_client(
    cfg: MqttConfig,
    client_id: str | None = None,
    clean_start: bool = True,
    will: tuple[str, str, int, bool] | None = None,
) -> paho.Client:
    """A configured, unconnected paho Client (VERSION2 callbacks).

    client_id: explicit id, else cfg.client_id, else a random one (only
    sensible with clean_start=True: a persistent session needs a stable id).
    will: (topic, payload, qos, retain) published by mosquitto if we vanish.
    """
    cid = client_id or cfg.client_id
    if not cid:
        if not clean_start:
            raise ValueError("a persistent MQTT session (clean_start=False) needs a stable client_id")
        cid = f"wgmesh-{uuid.uuid4().hex[:12]}"
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=cid,
        clean_session=clean_start,
        protocol=paho.MQTTv311,
    )
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls or cfg.ca_certs or cfg.certfile:
        # ca_certs None = the system trust store; hostnames are always checked.
        client.tls_set(
            ca_certs=cfg.ca_certs,
            certfile=cfg.certfile,
            keyfile=cfg.keyfile,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    if will is not None:
        topic, payload, qos, retain = will
        client.will_set(topic, payload, qos=qos, retain=retain)
    client.reconnect_delay_set(min_delay=RECONNECT_MIN_DELAY_S, max_delay=RECONNECT_MAX_DELAY_S)
    # Our QoS 1 publishes must never be refused locally because of a queue cap.
    client.max_queued_messages_set(0)
    return client


def connect_async(client: paho.Client, cfg: MqttConfig) -> None:
    """Start connecting in the background; paho's loop retries by itself."""
    client.connect_async(cfg.broker_url, cfg.broker_port, keepalive=cfg.keepalive)


def describe_connack(reason_code) -> str:
    """A human sentence for a failed CONNACK (auth problems named as such)."""
    value = getattr(reason_code, "value", reason_code)
    if value in AUTH_FAILURES:
        return f"MQTT broker refused the connection: {AUTH_FAILURES[value]} (check mqtt.username/mqtt.password)"
    return f"MQTT broker refused the connection: {reason_code}"
