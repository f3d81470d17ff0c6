"""The worker's MQTT session; its callbacks run in paho's network thread.

They only validate and queue (KeyEvent, Connected) for the apply thread, and subscribe on
every connect: a resumed session keeps its subscriptions, a lost one does not. Keys are
acknowledged by hand (manual PUBACK) once the committer has written them (committer.py).

A member of an HA pair (`ha` given) shares its worker name with its partner: it speaks for
the pair (status, data, metrics) only while active; its last will "0" waits
`worker.ha_will_delay` seconds (MQTT 5 Will Delay Interval), and the active member answers
any "0" on the pair's status topic with "1" (docs/ha.md, "One gateway to the broker").
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from wgmesh import mqtt, protocol
from wgmesh.config import Config
from wgmesh.ha import sync
from wgmesh.worker.harole import HaRole
from wgmesh.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyEvent:
    domain: str
    key: str
    mid: int
    generation: int  # the connection it arrived on: a PUBACK is only valid there
    received: float  # time.monotonic() in paho's thread


@dataclass(frozen=True)
class Connected:
    generation: int


def _no_delay(client, userdata, sock) -> None:
    # PUBACKs are tiny and sent in groups after each journal write; Nagle would hold them back
    with contextlib.suppress(OSError, AttributeError):  # not TCP: unix socket, websockets
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Session:
    def __init__(
        self,
        cfg: Config,
        domains: Collection[str],
        metrics: WorkerMetrics,
        events: queue.SimpleQueue,
        stopping: threading.Event,
        ha: HaRole | None = None,
    ):
        self.cfg = cfg
        self.name = cfg.worker.name
        self.domains = domains
        self.metrics = metrics
        self.events = events
        self.stopping = stopping
        self.ha = ha
        self.client_id = cfg.mqtt.client_id or self.name
        self.status_topic = protocol.topic_status(self.name)
        self.sync_prefix = protocol.TOPIC_HA_PEERS_SUB.format(identity=self.name).split("+", maxsplit=1)[0]
        self.generation = 0
        self.client = None

    @property
    def speaks_for_gateway(self) -> bool:
        """Whether status, data and metrics go out: always outside a pair, else while active."""
        return self.ha is None or self.ha.active

    def start(self) -> None:
        self.client = self._make_client()
        mqtt.connect_async(self.client, self.cfg.mqtt)
        self.client.loop_start()

    def _make_client(self):
        will = (self.status_topic, protocol.STATUS_OFFLINE, protocol.QOS_STATUS, True)
        client = mqtt.make_client(
            self.cfg.mqtt,
            client_id=self.client_id,
            clean_start=False,
            will=will,
            # a pair: the will waits, so a member back within the delay (a restart) cancels it,
            # and a standby's will is answered by the active member before nodes notice
            will_delay=self.cfg.worker.ha_will_delay if self.ha is not None else None,
        )
        client.manual_ack_set(True)
        client.on_socket_open = _no_delay
        client.on_connect = self.on_connect
        client.on_disconnect = self.on_disconnect
        client.on_message = self.on_message
        return client

    # --- paho's thread ------------------------------------------------------------
    def on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            log.error("%s", mqtt.describe_connack(reason_code))
            return
        self.generation += 1
        topics = [(protocol.topic_key(d), protocol.QOS_KEY) for d in self.domains]
        if self.ha is not None:  # to answer a partner's (or a crashed host's late) will, and to sync
            topics.append((self.status_topic, protocol.QOS_STATUS))
            topics.append((protocol.TOPIC_HA_PEERS_SUB.format(identity=self.name), protocol.QOS_HA_PEERS))
        client.subscribe(topics)
        if self.speaks_for_gateway:
            self.say_online()
        self.metrics.mqtt_connected.set(1)
        log.info(
            "MQTT connected to %s:%d as %s (session %s)",
            self.cfg.mqtt.broker_url,
            self.cfg.mqtt.broker_port,
            self.name,
            "resumed" if flags.session_present else "new",
        )
        self.events.put(Connected(self.generation))

    def on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self.metrics.mqtt_connected.set(0)
        if not self.stopping.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", reason_code)

    def on_message(self, client, userdata, message):
        if message.topic == self.status_topic:
            client.ack(message.mid, message.qos)
            if (
                self.ha is not None
                and self.ha.active
                and message.payload.decode(errors="replace") != protocol.STATUS_ONLINE
            ):
                log.info("HA: the pair's status says %r while this member is active; saying online", message.payload)
                self.say_online()
            return
        if self.ha is not None and message.topic.startswith(self.sync_prefix):
            client.ack(message.mid, message.qos)  # applied or not, it is never needed again
            self._on_sync(message)
            return
        parts = protocol.split_topic(message.topic)
        domain = parts[1] if len(parts) == 3 else None
        key = message.payload.decode("utf-8", errors="replace")
        if domain not in self.domains:
            log.warning("message on unexpected topic %s ignored", message.topic)
            client.ack(message.mid, message.qos)
        elif not protocol.is_valid_key(key):
            log.warning("domain %s: malformed key %r ignored", domain, key[:60])
            self.metrics.keys_rejected.labels(domain).inc()
            client.ack(message.mid, message.qos)
        else:
            self.events.put(KeyEvent(domain, key, message.mid, self.generation, time.monotonic()))

    def _on_sync(self, message) -> None:
        try:
            msg = sync.decode(message.topic, message.payload, self.name, self.domains)
        except sync.SyncError as exc:
            log.warning("HA sync: %s: %s; ignored", message.topic, exc)
            return
        if msg.client_id != self.client_id:  # our own retained message comes back too
            self.events.put(msg)

    # --- any thread -----------------------------------------------------------------
    def say_online(self) -> None:
        if self.client is not None:
            self.client.publish(self.status_topic, protocol.STATUS_ONLINE, qos=protocol.QOS_STATUS, retain=True)

    def ack(self, events: Iterable[KeyEvent]) -> None:
        """PUBACK for keys that arrived on the current connection (older ids mean nothing now:
        mosquitto sends those keys again after a reconnect)."""
        for event in events:
            if self.client is not None and event.generation == self.generation:
                self.client.ack(event.mid, protocol.QOS_KEY)

    def publish(self, topic: str, payload: str, qos: int, retain: bool = True) -> None:
        """What the broker reads of this gateway (data, metrics): dropped while a standby."""
        if self.client is not None and self.speaks_for_gateway:
            self.client.publish(topic, payload, qos=qos, retain=retain)

    def close(self) -> None:
        """Say offline (retained), then disconnect. A pair member says nothing: a standby's
        DISCONNECT discards its will; an active member's asks for it, so the pair goes offline
        after the will delay unless a member is active again by then (a restart, a promotion)."""
        if self.client is None:
            return
        if self.ha is not None:
            reason = mqtt.DISCONNECT_WITH_WILL if self.ha.active else None
            self.client.disconnect(reasoncode=reason)
            self.client.loop_stop()
            return
        info = self.client.publish(
            protocol.topic_status(self.name), protocol.STATUS_OFFLINE, qos=protocol.QOS_STATUS, retain=True
        )
        if self.client.is_connected():
            info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()
