"""paho-mqtt client factory shared by broker and worker (the MQTT transport layer).

Both daemons get the same auth, TLS, keepalive and reconnect behaviour from
one place. We speak MQTT 5 (wgkex speaks 3.1.1; mosquitto serves both on one
listener): only MQTT 5's PUBACK carries a reason code, so a publish that
mosquitto's ACL refuses is seen as refused instead of acknowledged.

A persistent session (the worker's) is ``clean_start=False`` with a stable
client id *and* a Session Expiry Interval (``mqtt.session_expiry``): in MQTT 5
a session without one ends at disconnect, and with it every key mosquitto would
have queued for the worker while it is away (needs ``persistence true``).

Callers install their callbacks, then ``connect_async(client, cfg)`` and
``client.loop_start()``; subscribe in ``on_connect`` so every reconnect
subscribes again.
"""

from __future__ import annotations

import ssl
import uuid

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from wgmesh.config import MqttConfig

RECONNECT_MIN_DELAY_S = 1
RECONNECT_MAX_DELAY_S = 30
# MQTT 5 DISCONNECT reason 0x04: a clean disconnect after which the broker still sends the will.
DISCONNECT_WITH_WILL = ReasonCode(PacketTypes.DISCONNECT, identifier=0x04)

# paho's CONNACK reason codes a restart cannot fix: report them clearly.
AUTH_FAILURES = {
    4: "bad user name or password",
    5: "not authorised",
    134: "bad user name or password",
    135: "not authorised",
}


class Client(paho.Client):
    """paho's Client that remembers how it must (re)connect: make_client decides, connect_async applies.

    MQTT 5 moved clean start from the client to CONNECT, so it travels with the client
    to keep both call signatures as they were.
    """

    wgmesh_clean_start: bool = True


def make_client(
    cfg: MqttConfig,
    client_id: str | None = None,
    clean_start: bool = True,
    will: tuple[str, str, int, bool] | None = None,
    will_delay: int | None = None,
) -> Client:
    """A configured, unconnected paho Client (VERSION2 callbacks).

    client_id: explicit id, else cfg.client_id, else a random one (only
    sensible with clean_start=True: a persistent session needs a stable id).
    will: (topic, payload, qos, retain) published by mosquitto if we vanish.
    will_delay: seconds mosquitto waits before it publishes the will (MQTT 5 Will Delay
    Interval); a reconnect to the same session within them cancels it. None: at once.
    """
    cid = client_id or cfg.client_id
    if not cid:
        if not clean_start:
            raise ValueError("a persistent MQTT session (clean_start=False) needs a stable client_id")
        cid = f"wgmesh-{uuid.uuid4().hex[:12]}"
    client = Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5)
    client.wgmesh_clean_start = clean_start
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
        will_properties = None
        if will_delay is not None:
            will_properties = Properties(PacketTypes.WILLMESSAGE)
            will_properties.WillDelayInterval = will_delay
        client.will_set(topic, payload, qos=qos, retain=retain, properties=will_properties)
    client.reconnect_delay_set(min_delay=RECONNECT_MIN_DELAY_S, max_delay=RECONNECT_MAX_DELAY_S)
    # Our QoS 1 publishes must never be refused locally because of a queue cap.
    client.max_queued_messages_set(0)
    return client


def connect_async(client: paho.Client, cfg: MqttConfig) -> None:
    """Start connecting in the background; paho's loop retries by itself (same CONNECT each time)."""
    clean_start = getattr(client, "wgmesh_clean_start", True)
    properties = Properties(PacketTypes.CONNECT)
    if not clean_start:
        # Keep the session (subscriptions, queued keys) across disconnects. Every connect,
        # the first included, resumes it: paho's default would start the first one clean.
        properties.SessionExpiryInterval = cfg.session_expiry
    client.connect_async(
        cfg.broker_url, cfg.broker_port, keepalive=cfg.keepalive, clean_start=clean_start, properties=properties
    )


def describe_connack(reason_code) -> str:
    """A human sentence for a failed CONNACK (auth problems named as such)."""
    value = getattr(reason_code, "value", reason_code)
    if value in AUTH_FAILURES:
        return f"MQTT broker refused the connection: {AUTH_FAILURES[value]} (check mqtt.username/mqtt.password)"
    return f"MQTT broker refused the connection: {reason_code}"
