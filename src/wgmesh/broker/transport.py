"""MQTT transport for the broker: paho run on the broker's asyncio loop (wgmesh.mqtt_asyncio).

`publish()` resolves only when mosquitto acknowledged the message (PUBACK of
a QoS 1 publish, with a successful MQTT 5 reason code), so the HTTP layer
answers 200 only for keys mosquitto holds; with a `KeyBuffer` also only once
the key is in its file, and every connect publishes the buffer again
(keybuffer.py says why).
paho's callbacks run on the loop thread (no thread of paho's own: it cost a third
of the CPU per request, docs/broker.md "Throughput"). The lock and `_early_acks`
still guard the case of a PUBACK handled inside `client.publish()` or from another
thread (a PUBACK that beats the registration of its future is parked in
`_early_acks`, only while a `client.publish()` call is under way (`_registering`),
and dropped right after it, so nothing old can wait there for a reused mid); we
never hold our lock while calling into paho.
paho's mids wrap at 65,535: a PUBACK for a mid we gave up on (timeout, lost
link, cancelled request) must never settle a later key that got the same mid,
so such mids are remembered in `_abandoned` until their PUBACK or their reuse.

`synced` says the retained worker state has arrived: after subscribing we
publish a marker to our own sync topic; mosquitto delivers a client's
messages in order, so when the marker comes back every retained message
queued before it has been handed to the registry. Until then "no gateway
known" means "not loaded yet", not "none online".
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import uuid
from collections.abc import Callable

import paho.mqtt.client as paho

from wgmesh import mqtt, protocol
from wgmesh.broker.keybuffer import KeyBuffer, KeyBufferError
from wgmesh.config import MqttConfig
from wgmesh.mqtt_asyncio import AsyncioLoopDriver

log = logging.getLogger(__name__)

SUBSCRIPTIONS = (
    (protocol.TOPIC_STATUS_SUB, protocol.QOS_STATUS),
    (protocol.TOPIC_METRICS_SUB, protocol.QOS_METRICS),
    (protocol.TOPIC_DATA_SUB, protocol.QOS_DATA),
)
MAX_INFLIGHT = 1000  # PUBACKs we wait for at once; paho's default of 20 throttles bursts
REPUBLISH_CHUNK = 500  # buffered keys sent per event-loop turn after a connect
SYNC_FALLBACK_S = 5.0  # marker never back (e.g. an ACL forbids the sync topic): assume synced


class PublishError(Exception):
    """The message is not known to be with mosquitto (not connected, timeout, lost link)."""


class PublishRefused(PublishError):
    """mosquitto answered the publish with a failing MQTT 5 reason code (e.g. Not authorized: ACL)."""

    def __init__(self, reason_code):
        super().__init__(f"MQTT broker refused the publish: {reason_code}")
        self.reason_code = reason_code


class BrokerTransport:
    def __init__(
        self,
        cfg: MqttConfig,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[str, bytes], None],
        buffer: KeyBuffer | None = None,
    ):
        self.cfg = cfg
        self.buffer = buffer  # keys answered 200, published again after every connect
        self.loop = loop
        self.on_message = on_message
        self.connected = False
        self.synced = False
        self._stopping = False
        self.last_error: str | None = "not connected yet"
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future] = {}
        self._early_acks: dict[int, object] = {}  # mid -> reason code, see the module doc
        self._registering = False  # publish() is inside client.publish(): an unknown PUBACK may be its own
        self._abandoned: set[int] = set()  # mids whose PUBACK, if it ever comes, belongs to no request
        self._own_mids: set[int] = set()  # our sync markers, not keys
        self._republished: set[int] = set()  # buffered keys sent again after a connect
        self._connects = 0  # a republish stops when a newer connect starts its own
        client_id = cfg.client_id or f"wgmesh-broker-{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.sync_topic = protocol.TOPIC_BROKER_SYNC.format(client_id=client_id.replace("/", "_"))
        self._sync_token = ""
        self._subscribe_mid: int | None = None
        self.client = mqtt.make_client(cfg, client_id=client_id, clean_start=True)
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self._driver = AsyncioLoopDriver(self.client, loop, on_connect_fail=self._connect_failed)

    @property
    def where(self) -> str:
        return f"{self.cfg.broker_url}:{self.cfg.broker_port}"

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background, retrying; call on the loop's thread."""
        mqtt.connect_async(self.client, self.cfg)
        self._driver.start()

    def stop(self) -> None:
        self._stopping = True
        self._driver.stop()
        self._fail_pending("broker is shutting down")

    def _call(self, fn, *args) -> None:
        """fn(*args) on the loop: right away from its thread (paho's callbacks), else thread-safe."""
        if self._driver.on_loop_thread():
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    # --- paho callbacks (paho's network thread) -----------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = mqtt.describe_connack(reason_code)
            log.error("%s (%s:%s)", self.last_error, self.cfg.broker_url, self.cfg.broker_port)
            return
        # Subscribe on every (re)connect: retained status/metrics/data arrive again.
        self.synced = False
        self._subscribe_mid = client.subscribe([*SUBSCRIPTIONS, (self.sync_topic, 1)])[1]
        self.connected = True
        self._driver.accepted()
        self._connects += 1
        if self.buffer is not None:
            republish = asyncio.run_coroutine_threadsafe(self._republish(self._connects), self.loop)
            republish.add_done_callback(_log_republish_failure)
        self.last_error = None
        log.info("connected to MQTT %s:%s", self.cfg.broker_url, self.cfg.broker_port)

    def _connect_failed(self) -> None:
        self._on_connect_fail(self.client, None)

    def _on_connect_fail(self, client, userdata) -> None:
        self.last_error = f"cannot connect to MQTT broker {self.where}"
        log.warning("%s; retrying", self.last_error)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self.connected = False
        self.synced = False
        if self.last_error is None or was:
            self.last_error = f"MQTT connection to {self.where} lost ({reason_code})"
        if was and not self._stopping:
            log.warning("%s; paho reconnects by itself", self.last_error)
        # Whatever was in flight is not known to be stored: let HTTP answer 503 now.
        self._fail_pending("MQTT connection lost before the broker acknowledged the key")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._subscribe_mid:
            return
        if any(rc.is_failure for rc in reason_codes):
            log.error("MQTT broker refused a subscription (%s): check the ACL of this user", reason_codes)
        self._sync_token = uuid.uuid4().hex
        # QoS 1 keeps it in order behind the QoS 1 retained messages; its PUBACK
        # must not be taken for a key's (this runs on paho's thread, before any PUBACK).
        self._own_mids.add(client.publish(self.sync_topic, self._sync_token, qos=1).mid)
        self.loop.call_soon_threadsafe(self.loop.call_later, SYNC_FALLBACK_S, self._sync_fallback, self._sync_token)

    def _on_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        if msg.topic == self.sync_topic:
            if msg.payload.decode(errors="replace") == self._sync_token:
                # Queued behind every retained message handed over before it.
                self._call(self._set_synced)
            return
        self._call(self.on_message, msg.topic, msg.payload)

    def _set_synced(self) -> None:
        if not self.synced:
            self.synced = True
            log.info("retained worker state loaded")

    def _sync_fallback(self, token: str) -> None:
        if not self.synced and token == self._sync_token and self.connected:
            log.warning(
                "no echo on %s after %ss (ACL?); serving with the state received so far",
                self.sync_topic,
                SYNC_FALLBACK_S,
            )
            self.synced = True

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if mid in self._own_mids:
            self._own_mids.discard(mid)
            return
        with self._lock:
            republished = mid in self._republished
            self._republished.discard(mid)
            late = not republished and mid in self._abandoned
            self._abandoned.discard(mid)  # a late PUBACK: its request was already answered 503
            fut = None if republished or late else self._pending.pop(mid, None)
            if fut is None and not (republished or late) and self._registering:
                self._early_acks[mid] = reason_code
        if republished and reason_code.is_failure:
            log.error("MQTT broker refused a republished key: %s", reason_code)
        if fut is not None:
            self._call(_settle, fut, _refusal(reason_code))

    def _fail_pending(self, why: str) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._abandoned.update(pending)  # paho may re-send them after reconnecting
            self._abandoned.update(self._republished)  # the next connect republishes them anyway
            self._republished.clear()
            self._early_acks.clear()
        for fut in pending.values():
            self._call(_settle, fut, PublishError(why))

    # --- asyncio side -----------------------------------------------------------

    def _send(self, topic: str, payload: str, qos: int):
        """client.publish(), and the PUBACK if it came before this returned (else None)."""
        with self._lock:
            self._registering = True
        try:
            info = self.client.publish(topic, payload, qos=qos)
        finally:
            with self._lock:
                self._registering = False
                parked, self._early_acks = self._early_acks, {}
        return info, parked.get(info.mid)

    async def _republish(self, connect: int) -> None:
        """Send every buffered key again (mosquitto may have lost them); nobody waits for these.

        In chunks, so requests are served meanwhile (100,000 keys took 1.8 s in one piece).
        """
        entries = self.buffer.touch_all()
        for start in range(0, len(entries), REPUBLISH_CHUNK):
            if not self.connected or connect != self._connects:
                return  # the next connect republishes everything anyway
            for topic, key in entries[start : start + REPUBLISH_CHUNK]:
                info, early = self._send(topic, key, protocol.QOS_KEY)
                with self._lock:
                    self._abandoned.discard(info.mid)
                    if early is None:
                        self._republished.add(info.mid)
            await asyncio.sleep(0)
        log.info("republished %d buffered key(s) after connecting to %s", len(entries), self.where)

    async def publish(self, topic: str, payload: str, qos: int, timeout: float) -> None:
        """Return once mosquitto acknowledged; raise PublishError otherwise."""
        if not self.connected:
            raise PublishError(f"MQTT broker unreachable ({self.last_error or 'not connected'})")
        info, early = self._send(topic, payload, qos)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise PublishError(f"MQTT publish failed: {paho.error_string(info.rc)}")
        stored = self.buffer.add(topic, payload) if self.buffer is not None else None  # written meanwhile
        fut = self.loop.create_future()
        with self._lock:
            self._abandoned.discard(info.mid)  # reused: from now on its PUBACK is this key's
            if early is None:
                self._pending[info.mid] = fut
        if early is not None:
            _settle(fut, _refusal(early))
        try:
            async with asyncio.timeout(timeout):  # cheaper than wait_for, which wraps the future
                await fut
        except PublishRefused as exc:
            why = f"MQTT broker refused the key on {topic}: {exc.reason_code}"
            # One line per refused key would flood the log: wgmesh.logfilter holds repeats back.
            log.error("%s; answering 503 (check the ACL of MQTT user %r)", why, self.cfg.username)
            raise PublishError(why) from None
        except TimeoutError:
            raise PublishError(f"MQTT broker did not acknowledge within {timeout:g}s") from None
        finally:
            with self._lock:
                if self._pending.pop(info.mid, None) is not None:
                    self._abandoned.add(info.mid)  # given up (timeout, cancelled): its PUBACK is late
        if stored is not None:
            try:
                await stored  # 200 means: mosquitto has it and so does our disk
            except KeyBufferError as exc:
                log.error("%s; answering 503", exc)
                raise PublishError(f"key not kept on disk: {exc}") from None


def _log_republish_failure(republish) -> None:
    if not republish.cancelled() and (exc := republish.exception()) is not None:
        log.error("republishing the key buffer failed: %r (the next connect tries again)", exc)


def _refusal(reason_code) -> PublishError | None:
    """None for a successful PUBACK (MQTT 5 reason code < 128), else the error to raise."""
    return PublishRefused(reason_code) if getattr(reason_code, "is_failure", False) else None


def _settle(fut: asyncio.Future, error: Exception | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
