"""The worker daemon: one persistent MQTT session in, kernel changes out.

Threads: paho's network thread only validates and queues (and subscribes in on_connect, on
every reconnect); the apply thread owns the kernel, the journal's content and the timers; the
committer thread writes the journal and then sends the PUBACKs (manual acknowledgement). A key
is acknowledged only after it was tried in the kernel and the journal write was attempted, so a
key that arrives while the worker dies is delivered again by mosquitto. While the disk refuses
the journal, keys are acknowledged from memory and the write is retried (docs/worker.md).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from wgmesh import derive, mqtt, protocol
from wgmesh.config import Config
from wgmesh.worker.backend import BackendError, BackendSelector, Device, InterfaceMissing
from wgmesh.worker.errors import KernelError
from wgmesh.worker.journal import Journal, JournalError, write_atomic
from wgmesh.worker.links import LinkError, Links
from wgmesh.worker.metrics import WorkerMetrics
from wgmesh.worker.reconcile import StalePolicy, plan

log = logging.getLogger(__name__)

MAX_BATCH = 5000  # keys applied together when they arrive in a burst
# The journal write (and with it the PUBACKs, which no node waits for) covers the keys of the
# last COMMIT_LINGER_S, and a steady stream still gets one every COMMIT_MAX_DELAY_S: one
# serialisation and fsync per group instead of per key (the journal grows with the mesh).
COMMIT_LINGER_S = 0.05
COMMIT_MAX_DELAY_S = 0.5
JOURNAL_RETRY_S = 1.0  # while the disk refuses the journal: how often to try again


@dataclass(frozen=True)
class DomainLinks:
    domain: str
    wg: str
    vx: str
    rule: str


def domain_links(cfg: Config) -> list[DomainLinks]:
    out = []
    for domain in cfg.domains:
        names = derive.interface_names(domain, cfg.domain_prefixes)
        names.update(cfg.worker.interfaces.get(domain, {}))
        out.append(DomainLinks(domain, names["wg"], names["vx"], cfg.rule_for(domain)))
    return out


@dataclass(frozen=True)
class _Key:
    domain: str
    key: str
    mid: int
    generation: int
    received: float  # time.monotonic() in paho's thread


@dataclass(frozen=True)
class _Connected:
    generation: int


def _no_delay(client, userdata, sock) -> None:
    # PUBACKs are tiny and sent in groups after each journal write; Nagle would hold them back
    with contextlib.suppress(OSError, AttributeError):  # not TCP: unix socket, websockets
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Worker:
    def __init__(
        self,
        cfg: Config,
        selector: BackendSelector | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = cfg
        self.name = cfg.worker.name
        self.domains = {d.domain: d for d in domain_links(cfg)}
        self.selector = selector or BackendSelector(cfg.worker.backend)
        self.clock = clock
        self.policy = StalePolicy(cfg.worker.stale_after, cfg.worker.grace_period)
        self.static = frozenset(cfg.worker.static_peers)
        self.metrics = WorkerMetrics()
        self.journal = Journal(cfg.worker.journal)
        self.metrics.journal_set_aside.inc(self.journal.entries_set_aside)
        self.events: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.since: dict[str, dict[str, float]] = {d: {} for d in self.domains}  # see reconcile.plan
        self._generation = 0
        self._unacked: list[_Key] = []  # applied, waiting for the journal write
        self._unacked_since = 0.0
        self._commits: queue.Queue = queue.Queue()  # (journal bytes, keys) for the committer thread
        self._committer_thread = threading.Thread(target=self._committer, name="journal", daemon=True)
        self._links: Links | None = None
        self.journal_problem: str | None = None  # set by the committer while the disk refuses writes
        self.client = None

    # --- MQTT (paho's thread: validate, queue, subscribe) ---------------------------
    def _make_client(self):
        will = (protocol.topic_status(self.name), protocol.STATUS_OFFLINE, protocol.QOS_STATUS, True)
        client = mqtt.make_client(
            self.cfg.mqtt, client_id=self.cfg.mqtt.client_id or self.name, clean_start=False, will=will
        )
        client.manual_ack_set(True)
        client.on_socket_open = _no_delay
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            log.error("%s", mqtt.describe_connack(reason_code))
            return
        self._generation += 1
        # Subscribe on EVERY connect: a resumed session keeps subscriptions, a lost one does not.
        client.subscribe([(protocol.topic_key(d), protocol.QOS_KEY) for d in self.domains])
        client.publish(protocol.topic_status(self.name), protocol.STATUS_ONLINE, qos=protocol.QOS_STATUS, retain=True)
        self.metrics.mqtt_connected.set(1)
        log.info(
            "MQTT connected to %s:%d as %s (session %s)",
            self.cfg.mqtt.broker_url,
            self.cfg.mqtt.broker_port,
            self.name,
            "resumed" if flags.session_present else "new",
        )
        self.events.put(_Connected(self._generation))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self.metrics.mqtt_connected.set(0)
        if not self.stopping.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, message):
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
            self.events.put(_Key(domain, key, message.mid, self._generation, time.monotonic()))

    # --- the apply thread -------------------------------------------------------
    @property
    def links(self) -> Links:
        if self._links is None:
            self._links = Links()
        return self._links

    def run(self) -> None:
        if self.cfg.worker.metrics_listen:
            host, port = self.cfg.worker.metrics_listen
            self.metrics.serve(host, port, self.health)
            log.info("metrics on http://%s:%d/metrics, health on /health", host, port)
        self.reconcile_all()  # serve known nodes at once, before MQTT is even up
        self._committer_thread.start()
        self.client = self._make_client()
        mqtt.connect_async(self.client, self.cfg.mqtt)
        self.client.loop_start()
        next_metrics = next_reconcile = time.monotonic()
        next_reconcile += self.cfg.worker.reconcile_interval
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                if now >= next_metrics:
                    self.publish_metrics()
                    next_metrics = now + protocol.METRICS_INTERVAL_S
                if now >= next_reconcile:
                    self.reconcile_all()
                    next_reconcile = now + self.cfg.worker.reconcile_interval
                timeout = max(0.0, min(next_metrics, next_reconcile) - time.monotonic())
                if self._unacked:  # keys wait for their journal write: linger briefly for more
                    timeout = max(0.0, self._unacked_since + COMMIT_LINGER_S - time.monotonic())
                try:
                    first = self.events.get(timeout=min(timeout, 1.0))
                except queue.Empty:
                    self.commit()
                    continue
                self._handle([first, *self._drain()])
                if self._unacked and time.monotonic() - self._unacked_since >= COMMIT_MAX_DELAY_S:
                    self.commit()
        finally:
            self._shutdown()

    def stop(self) -> None:
        self.stopping.set()
        self.events.put(None)

    def _drain(self) -> list:
        out = []
        while len(out) < MAX_BATCH:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                break
        return out

    def _handle(self, events: list) -> None:
        keys = [e for e in events if isinstance(e, _Key)]
        if keys:
            self.apply_keys(keys)
        for event in events:
            if isinstance(event, _Connected) and event.generation == self._generation:
                self.reconcile_all()
                self.publish_data()
                self.publish_metrics()

    def _shutdown(self) -> None:
        self.commit()
        if self._committer_thread.is_alive():
            self._commits.put(None)
            self._committer_thread.join()
        if self.client is not None:
            info = self.client.publish(
                protocol.topic_status(self.name), protocol.STATUS_OFFLINE, qos=protocol.QOS_STATUS, retain=True
            )
            if self.client.is_connected():
                info.wait_for_publish(timeout=2)
            self.client.disconnect()
            self.client.loop_stop()
        if self._links is not None:
            self._links.close()

    # --- keys -------------------------------------------------------------------
    def apply_keys(self, events: list[_Key]) -> None:
        """Kernel first (the node waits for it); the journal write and the acknowledgement follow
        in commit(), once no more keys are queued (one fsync for a burst). A crash before the
        commit leaves the keys unacknowledged, so mosquitto delivers them again."""
        started = time.perf_counter()
        now = self.clock()
        by_domain: dict[str, list[str]] = {}
        for event in events:
            self.journal.add(event.domain, event.key, now)
            self.metrics.keys_received.labels(event.domain).inc()
            if event.key in self.static:
                log.warning("domain %s: key %s is a static peer; left alone", event.domain, event.key)
                continue
            by_domain.setdefault(event.domain, []).append(event.key)
        for domain, keys in by_domain.items():
            dom = self.domains[domain]
            try:
                self._add(dom, list(dict.fromkeys(keys)), now)
            except KernelError as exc:  # the keys are in the journal: reconcile puts them in
                self._kernel_failed(dom, f"adding {len(keys)} keys", exc)
        done = time.monotonic()
        for event in events:
            self.metrics.key_seconds.observe(done - event.received)
        if not self._unacked:
            self._unacked_since = time.monotonic()
        self._unacked.extend(events)
        self.metrics.apply_seconds.observe(time.perf_counter() - started)

    def commit(self) -> None:
        """Hand the journal's content and the keys it holds to the committer thread, which
        writes it (fsync: 7-40 ms here) and then acknowledges them, while this thread goes on
        applying keys."""
        if not self._unacked:
            return
        pending, self._unacked = self._unacked, []
        self._commits.put((self.journal.snapshot(), pending))

    def _committer(self) -> None:
        """Write the newest journal content, then acknowledge the keys it covers. A failed write
        (disk full, read-only) must not stall the worker: the keys are in the kernel and in
        memory, so they are acknowledged anyway (else mosquitto's in-flight window fills and no
        key arrives any more), counted, reported in /health, and the write is retried every
        JOURNAL_RETRY_S until the disk takes it."""
        unwritten: bytes | None = None  # newest content the disk refused
        held = 0  # keys acknowledged since the last successful write
        while True:
            try:
                item = self._commits.get(timeout=JOURNAL_RETRY_S if unwritten is not None else None)
            except queue.Empty:
                item = (unwritten, [])
            if item is None:
                return
            data, pending = item
            while True:  # only the newest content matters; acknowledge everything it covers
                try:
                    newer = self._commits.get_nowait()
                except queue.Empty:
                    break
                if newer is None:
                    self._commits.put(None)
                    break
                data, pending = newer[0], pending + newer[1]
            try:
                write_atomic(self.journal.path, data)
            except JournalError as exc:
                if unwritten is None:
                    log.error("%s; keys are applied and acknowledged but held in memory only; retrying", exc)
                unwritten, held = data, held + len(pending)
                self.journal_problem = f"{exc}; {held} keys held in memory only"
            else:
                if unwritten is not None:
                    log.warning(
                        "journal %s written again; the %d keys held in memory are on disk", self.journal.path, held
                    )
                unwritten, held = None, 0
                self.journal_problem = None
            self.metrics.journal_unwritten.set(held)
            for event in pending:  # reconcile retries what failed in the kernel
                if self.client is not None and event.generation == self._generation:
                    self.client.ack(event.mid, protocol.QOS_KEY)

    def health(self) -> str | None:
        """What keeps the worker from being fully healthy (for /health), or None."""
        return self.journal_problem

    def _lladdr(self, dom: DomainLinks, key: str) -> ipaddress.IPv6Address:
        return derive.lladdr_from_key(key, dom.rule)

    def _add(self, dom: DomainLinks, keys: list[str], now: float, replace_allowed_ips: bool = False) -> None:
        """Peers in one batch, then routes and FDB entries in bulk. Errors are logged per key."""
        if not keys:
            return
        try:
            backend = self.selector.for_interface(dom.wg)
            peers = [(k, (f"{self._lladdr(dom, k)}/128",)) for k in keys]
            backend.set_peers(dom.wg, peers, replace_allowed_ips=replace_allowed_ips)
        except BackendError as exc:
            self.selector.forget(dom.wg)
            for key in keys:
                log.error("domain %s: key %s: peer not added: %s", dom.domain, key, exc)
            self.metrics.key_errors.labels(dom.domain).inc(len(keys))
            self.metrics.kernel_errors.labels(dom.domain).inc()
            return
        since = self.since[dom.domain]
        for key in keys:
            since[key] = now
        self.metrics.peers_added.labels(dom.domain).inc(len(keys))
        wg_index = self.links.ifindex(dom.wg)
        vx_index = self.links.ifindex(dom.vx)
        if wg_index is None:
            log.error("domain %s: interface %s vanished; routes for %d keys not added", dom.domain, dom.wg, len(keys))
            return
        if vx_index is None:
            log.error("domain %s: VXLAN interface %s missing; no FDB entries added", dom.domain, dom.vx)
        lladdrs = {self._lladdr(dom, k): k for k in keys}
        failed = self.links.add_many(lladdrs, wg_index, vx_index)
        if failed:  # perhaps an interface was recreated under a new index: look again, retry once
            self.links.forget()
            wg_index, vx_index = self.links.ifindex(dom.wg), self.links.ifindex(dom.vx)
            if wg_index is not None:
                failed = self.links.add_many([a for a, dummy in failed], wg_index, vx_index)
        for lladdr, exc in failed:
            log.error("domain %s: key %s: %s", dom.domain, lladdrs[lladdr], exc)
            self.metrics.key_errors.labels(dom.domain).inc()

    def _remove(self, dom: DomainLinks, removals: dict[str, tuple[ipaddress.IPv6Address, ...]]) -> None:
        """Undo in reverse order: FDB entry, route, peer. Parts that are gone already are fine."""
        wg_index = self.links.ifindex(dom.wg)
        vx_index = self.links.ifindex(dom.vx)
        for key, lladdrs in removals.items():
            try:
                for lladdr in lladdrs:
                    if vx_index is not None and wg_index is not None:
                        self.links.del_fdb(lladdr, vx_index, wg_index)
                    if wg_index is not None:
                        self.links.del_route(lladdr, wg_index)
            except LinkError as exc:
                log.error("domain %s: key %s: %s", dom.domain, key, exc)
                self.metrics.kernel_errors.labels(dom.domain).inc()
        try:
            self.selector.for_interface(dom.wg).remove_peers(dom.wg, list(removals))
        except BackendError as exc:
            self._kernel_failed(dom, f"removing {len(removals)} stale peers", exc)
            return
        self.journal.remove(dom.domain, removals)
        for key in removals:
            self.since[dom.domain].pop(key, None)
        self.metrics.peers_removed.labels(dom.domain).inc(len(removals))

    def _kernel_failed(self, dom: DomainLinks, what: str, exc: KernelError) -> None:
        """One domain's kernel-side failure: logged, counted, and the interface looked up anew;
        the journal still holds its keys, so the next reconcile retries."""
        self.selector.forget(dom.wg)
        self.links.forget()
        self.metrics.kernel_errors.labels(dom.domain).inc()
        log.error("domain %s: %s: %s; retried at the next reconcile", dom.domain, what, exc)

    # --- reconcile ----------------------------------------------------------------
    def reconcile_all(self) -> None:
        started = time.perf_counter()
        self.links.forget()
        for dom in self.domains.values():
            try:
                self.reconcile(dom)
            except KernelError as exc:
                self._kernel_failed(dom, "reconcile failed", exc)
        if self._committer_thread.is_alive():
            if self.journal.dirty:  # through the committer, so writes stay in order
                self._commits.put((self.journal.snapshot(), []))
        else:
            try:
                self.journal.save()
            except JournalError as exc:
                log.error("%s", exc)
        self.metrics.reconcile_seconds.observe(time.perf_counter() - started)

    def reconcile(self, dom: DomainLinks) -> None:
        desired = self.journal.keys(dom.domain)
        self.metrics.journal_keys.labels(dom.domain).set(len(desired))
        try:
            device = self.selector.for_interface(dom.wg).device(dom.wg)
        except InterfaceMissing as exc:
            log.warning("domain %s: %s; %d journal keys wait for it", dom.domain, exc, len(desired))
            return
        now = self.clock()
        since = self.since[dom.domain]
        for key in device.peers:
            if key not in desired:
                since.setdefault(key, now)  # unmanaged: the grace period starts when we first see it
        wg_index = self.links.ifindex(dom.wg)
        vx_index = self.links.ifindex(dom.vx)
        if wg_index is None:
            return
        routes = self.links.host_routes(wg_index)
        fdb = self.links.fdb_destinations(vx_index, wg_index) if vx_index is not None else None
        todo = plan(
            desired,
            device.peers,
            routes,
            fdb,
            lambda k: self._lladdr(dom, k),
            self.static,
            since,
            now,
            self.policy,
        )
        if todo.remove:
            log.info("domain %s: removing %d stale peers", dom.domain, len(todo.remove))
            self._remove(dom, todo.remove_lladdrs)
        if todo.add_peers:
            log.info("domain %s: reconcile adds %d peers", dom.domain, len(todo.add_peers))
            self._add(dom, todo.add_peers, now)
        if todo.fix_peers:
            log.info("domain %s: reconcile corrects allowed-ips of %d peers", dom.domain, len(todo.fix_peers))
            self._add(dom, todo.fix_peers, now, replace_allowed_ips=True)
        done = set(todo.add_peers) | set(todo.fix_peers)
        repair = [k for k in todo.add_links if k not in done]
        if repair:
            log.info("domain %s: reconcile repairs routes/FDB of %d peers", dom.domain, len(repair))
            lladdrs = {self._lladdr(dom, k): k for k in repair}
            for lladdr, exc in self.links.add_many(lladdrs, wg_index, vx_index):
                log.error("domain %s: key %s: %s", dom.domain, lladdrs[lladdr], exc)
        self.metrics.peers.labels(dom.domain).set(len(device.peers) + len(todo.add_peers) - len(todo.remove))

    # --- what the broker reads ---------------------------------------------------
    def _device(self, dom: DomainLinks) -> Device | None:
        try:
            return self.selector.for_interface(dom.wg).device(dom.wg)
        except BackendError as exc:
            self.selector.forget(dom.wg)
            log.warning("domain %s: %s", dom.domain, exc)
            return None

    def connected_peers(self, device: Device | None) -> int:
        if device is None:
            return protocol.METRICS_OFFLINE
        cutoff = self.clock() - protocol.HANDSHAKE_ACTIVE_S
        return sum(1 for p in device.peers.values() if p.last_handshake >= cutoff)

    def publish_metrics(self) -> None:
        for dom in self.domains.values():
            count = self.connected_peers(self._device(dom))
            self.metrics.connected.labels(dom.domain).set(count)
            if self.client is not None:
                self.client.publish(
                    protocol.topic_metrics(dom.domain, self.name), str(count), qos=protocol.QOS_METRICS, retain=True
                )

    def publish_data(self) -> None:
        for dom in self.domains.values():
            device = self._device(dom)
            try:
                lladdr = self.links.link_local(dom.wg)
            except LinkError as exc:
                self._kernel_failed(dom, "reading the link-local address", exc)
                continue
            if device is None or device.public_key is None or lladdr is None:
                log.warning(
                    "domain %s: %s not ready (key, port or link-local address missing); no data published",
                    dom.domain,
                    dom.wg,
                )
                continue
            data = {
                "ExternalAddress": self.cfg.external_name or self.name,
                "Port": device.listen_port,
                "PublicKey": device.public_key,
                "LinkAddress": str(lladdr),
            }
            self.client.publish(
                protocol.topic_data(self.name, dom.domain), json.dumps(data), qos=protocol.QOS_DATA, retain=True
            )
