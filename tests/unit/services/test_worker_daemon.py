"""The worker's MQTT handling and key path, with the kernel and the broker replaced.

Doubles (and why): FakeClient records what paho would send (the real session is covered by
tests/integration/services/test_worker_mqtt.py against mosquitto); FakeBackend/FakeLinks stand
in for WireGuard and rtnetlink (covered in namespaces by test_worker_backends.py).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import time
from types import SimpleNamespace

import pytest

from wgmesh import derive, protocol
from wgmesh.config import parse_config
from wgmesh.worker.backend import BackendError, Device, Peer
from wgmesh.worker.daemon import LINK_SETTLE_S, Worker
from wgmesh.worker.errors import KernelError
from wgmesh.worker.links import LinkError, Links
from wgmesh.worker.linkwatch import LinkChanged
from wgmesh.worker.rtnl_bulk import BulkError, BulkRtnl

KEY1 = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
KEY2 = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="
STATIC = "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg="
NOW = 1_800_000_000.0


class FakeClient:
    def __init__(self):
        self.subscribed, self.published, self.acked = [], [], []

    def subscribe(self, topics):
        self.subscribed.append(topics)

    def publish(self, topic, payload, qos=0, retain=False):
        self.published.append((topic, payload, qos, retain))

    def ack(self, mid, qos):
        self.acked.append(mid)


class FakeBackend:
    name = "fake"

    def __init__(self):
        self.peers: dict[str, Peer] = {}
        self.fail = False

    def device(self, ifname):
        return Device("GWKEYGWKEYGWKEYGWKEYGWKEYGWKEYGWKEYGWKEYGWK=", 51820, dict(self.peers))

    def set_peers(self, ifname, peers, replace_allowed_ips=False):
        if self.fail:
            raise BackendError(f"interface {ifname}: refused")
        for key, ips in peers:
            self.peers[key] = Peer(key, ips, 0.0)

    def remove_peers(self, ifname, keys):
        for key in keys:
            self.peers.pop(key, None)


class FakeLinks:
    def __init__(self):
        self.routes, self.fdb = set(), set()

    def ifindex(self, name):
        return {"wg-welt": 5, "vx-welt": 6}.get(name)

    def forget(self):
        pass

    def link_local(self, name):
        return ipaddress.IPv6Address("fe80::1")

    def host_routes(self, wg):
        return set(self.routes)

    def fdb_destinations(self, vx, wg):
        return set(self.fdb)

    def add_many(self, lladdrs, wg, vx):
        for a in lladdrs:
            self.routes.add(a)
            if vx is not None:
                self.fdb.add(a)
        return []

    def del_fdb(self, a, vx, wg):
        self.fdb.discard(a)

    def del_route(self, a, wg):
        self.routes.discard(a)

    def close(self):
        pass


@pytest.fixture
def worker(tmp_path):
    cfg = parse_config(
        {
            "domains": ["ffmuc_welt"],
            "domain_prefixes": ["ffmuc_"],
            "externalName": "gw1.example.net",
            "worker": {"name": "gw1", "journal": str(tmp_path / "journal.json"), "static_peers": [STATIC]},
        }
    )
    backend = FakeBackend()
    selector = SimpleNamespace(for_interface=lambda name: backend, forget=lambda name: None)
    w = Worker(cfg, selector=selector, links=FakeLinks(), clock=lambda: NOW)
    w.client = w.session.client = FakeClient()
    w.backend = backend
    return w


def message(topic, payload, mid=1):
    return SimpleNamespace(topic=topic, payload=payload.encode(), mid=mid, qos=1)


def test_connect_subscribes_every_time_and_says_online(worker):
    flags = SimpleNamespace(session_present=True)
    ok = SimpleNamespace(is_failure=False)
    worker.session.on_connect(worker.client, None, flags, ok)
    worker.session.on_connect(worker.client, None, flags, ok)  # a reconnect subscribes again
    assert worker.client.subscribed == [[("wireguard/ffmuc_welt/all", 1)]] * 2
    assert worker.client.published.count(("wireguard-worker/gw1/status", "1", 1, True)) == 2
    assert worker.events.qsize() == 2  # the apply thread reconciles and publishes data


def test_malformed_keys_are_acknowledged_and_never_queued(worker):
    for mid, payload in enumerate(["nonsense", KEY1 + "\n", KEY1[:-1], ""], start=1):
        worker.session.on_message(worker.client, None, message("wireguard/ffmuc_welt/all", payload, mid))
    worker.session.on_message(worker.client, None, message("wireguard/other/all", KEY1, 9))
    assert worker.events.empty()
    assert worker.client.acked == [1, 2, 3, 4, 9]


def test_key_reaches_kernel_then_journal_then_ack(worker):
    worker.session.on_message(worker.client, None, message("wireguard/ffmuc_welt/all", KEY1, 7))
    worker.apply_keys([worker.events.get_nowait()])
    lladdr = derive.lladdr_from_key(KEY1)
    assert worker.backend.peers[KEY1].allowed_ips == (f"{lladdr}/128",)
    assert lladdr in worker.changes.links.routes and lladdr in worker.changes.links.fdb
    assert worker.client.acked == []  # not before the journal holds it
    worker.commit()
    data, pending = worker.committer._queue.get_nowait()  # what the committer thread would write
    assert json.loads(data)["domains"]["ffmuc_welt"] == {KEY1: NOW}
    assert [e.mid for e in pending] == [7]


def test_error_on_a_key_is_logged_and_the_worker_goes_on(worker, caplog):
    worker.backend.fail = True
    worker.session.on_message(worker.client, None, message("wireguard/ffmuc_welt/all", KEY1, 1))
    worker.apply_keys([worker.events.get_nowait()])
    assert f"key {KEY1}" in caplog.text and "ffmuc_welt" in caplog.text
    assert worker.journal.keys("ffmuc_welt") == {KEY1: NOW}  # reconcile will retry it
    worker.backend.fail = False
    worker.reconcile_all()
    assert KEY1 in worker.backend.peers


def test_static_peer_key_is_recorded_but_not_touched(worker):
    worker.session.on_message(worker.client, None, message("wireguard/ffmuc_welt/all", STATIC, 1))
    worker.apply_keys([worker.events.get_nowait()])
    assert STATIC not in worker.backend.peers


def test_data_and_connected_peers_for_the_broker(worker):
    worker.backend.peers = {KEY1: Peer(KEY1, (), NOW - 10), KEY2: Peer(KEY2, (), NOW - 600)}
    worker.publish_data()
    worker.publish_metrics()
    published = {topic: payload for topic, payload, _qos, _retain in worker.client.published}
    assert json.loads(published[protocol.topic_data("gw1", "ffmuc_welt")]) == {
        "ExternalAddress": "gw1.example.net",
        "Port": 51820,
        "PublicKey": "GWKEYGWKEYGWKEYGWKEYGWKEYGWKEYGWKEYGWKEYGWK=",
        "LinkAddress": "fe80::1",
    }
    assert published[protocol.topic_metrics("ffmuc_welt", "gw1")] == "1"  # only the recent handshake


def test_missing_interface_reports_minus_one(worker):
    def missing(ifname):
        raise BackendError("interface wg-welt does not exist")

    worker.backend.device = missing
    worker.publish_metrics()
    assert worker.client.published[-1][:2] == (protocol.topic_metrics("ffmuc_welt", "gw1"), "-1")


def test_a_damaged_journal_entry_is_counted_and_the_worker_serves_the_rest(tmp_path):
    journal = tmp_path / "journal.json"
    journal.write_text(json.dumps({"version": 1, "domains": {"ffmuc_welt": {KEY1: NOW, "not-a-key": None}}}))
    cfg = parse_config(
        {"domains": ["ffmuc_welt"], "domain_prefixes": ["ffmuc_"], "worker": {"name": "gw1", "journal": str(journal)}}
    )
    backend = FakeBackend()
    selector = SimpleNamespace(for_interface=lambda name: backend, forget=lambda name: None)
    w = Worker(cfg, selector=selector, links=FakeLinks(), clock=lambda: NOW)
    w.reconcile_all()
    assert list(backend.peers) == [KEY1]
    assert w.metrics.registry.get_sample_value("wgmesh_worker_journal_entries_set_aside_total") == 1


LOW_ORDER_KEY = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="  # the all-zero Curve25519 point


def test_a_low_order_key_is_acknowledged_counted_and_never_becomes_a_peer(worker):
    worker.session.on_message(worker.client, None, message("wireguard/ffmuc_welt/all", LOW_ORDER_KEY, 3))
    assert worker.events.empty()
    assert worker.client.acked == [3]
    assert worker.metrics.registry.get_sample_value("wgmesh_worker_keys_rejected_total", {"domain": "ffmuc_welt"}) == 1


# --- kernel-side failures: one family, handled per domain, retried by reconcile --------------


class FailingNetlinkSocket:
    """Every send fails as the kernel fails it under memory pressure (ENOBUFS)."""

    def sendall(self, data):
        raise OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))

    def recv(self, size):
        raise OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))

    def close(self):
        pass


class BulkFaultLinks(FakeLinks):
    """FakeLinks for two domains whose routes/FDB for wg-welt (index 5) go through the real
    Links.add_many and BulkRtnl code onto a failing socket, until heal(). (A real socket would
    change the host's routing table: the namespaced tests cover the working path.)"""

    def __init__(self):
        super().__init__()
        self.bulk = BulkRtnl()
        self.bulk.sock.close()
        self.bulk.sock = FailingNetlinkSocket()
        self.faulty = True

    def ifindex(self, name):
        return {"wg-welt": 5, "vx-welt": 6, "wg-uml": 7, "vx-uml": 8}.get(name)

    def heal(self):
        self.faulty = False

    def add_many(self, lladdrs, wg, vx):
        if self.faulty and wg == 5:
            return Links.add_many(self, lladdrs, wg, vx)
        return super().add_many(lladdrs, wg, vx)

    def host_routes(self, wg):
        if self.faulty and wg == 5:
            return Links.host_routes(self, wg)
        return super().host_routes(wg)


@pytest.fixture
def two_domains(tmp_path):
    cfg = parse_config(
        {
            "domains": ["ffmuc_welt", "ffmuc_uml"],
            "domain_prefixes": ["ffmuc_"],
            "worker": {"name": "gw1", "journal": str(tmp_path / "journal.json")},
        }
    )
    backend = FakeBackend()
    selector = SimpleNamespace(for_interface=lambda name: backend, forget=lambda name: None)
    w = Worker(cfg, selector=selector, links=BulkFaultLinks(), clock=lambda: NOW)
    w.client = w.session.client = FakeClient()
    w.backend = backend
    return w


def kernel_errors(w, domain):
    return w.metrics.registry.get_sample_value("wgmesh_worker_kernel_errors_total", {"domain": domain}) or 0


def test_a_failing_bulk_add_is_logged_counted_and_retried_per_domain(two_domains, caplog):
    w = two_domains
    w.session.on_message(w.client, None, message("wireguard/ffmuc_welt/all", KEY1, 1))
    w.session.on_message(w.client, None, message("wireguard/ffmuc_uml/all", KEY2, 2))
    w.apply_keys(list(w.drain()))  # was: BulkError/OSError escaping the apply thread
    assert "ffmuc_welt" in caplog.text and os.strerror(errno.ENOBUFS) in caplog.text
    assert kernel_errors(w, "ffmuc_welt") >= 1 and kernel_errors(w, "ffmuc_uml") == 0
    assert derive.lladdr_from_key(KEY2) in w.changes.links.routes  # the other domain went on
    assert w.journal.keys("ffmuc_welt") == {KEY1: NOW}
    w.commit()
    assert [e.mid for e in w.committer._queue.get_nowait()[1]] == [1, 2]  # both acknowledged after the write
    w.changes.links.heal()
    w.reconcile_all()
    assert derive.lladdr_from_key(KEY1) in w.changes.links.routes


def test_a_failing_bulk_dump_fails_only_its_domain_and_reconcile_retries(two_domains, caplog):
    w = two_domains
    w.journal.add("ffmuc_welt", KEY1, NOW)
    w.journal.add("ffmuc_uml", KEY2, NOW)
    w.reconcile_all()  # was: BulkError escaping reconcile_all, which stopped the worker
    assert "ffmuc_welt" in caplog.text and "reconcile failed" in caplog.text
    assert kernel_errors(w, "ffmuc_welt") == 1
    assert derive.lladdr_from_key(KEY2) in w.changes.links.routes
    w.changes.links.heal()
    w.reconcile_all()
    assert derive.lladdr_from_key(KEY1) in w.changes.links.routes


def test_bulk_socket_errors_belong_to_the_kernel_error_family():
    bulk = BulkRtnl()
    bulk.sock.close()
    bulk.sock = FailingNetlinkSocket()
    with pytest.raises(KernelError, match="No buffer space"):
        bulk.replace_routes([derive.lladdr_from_key(KEY1)], 5)
    with pytest.raises(KernelError):
        bulk.host_routes(5)
    assert issubclass(BulkError, KernelError)
    assert issubclass(BackendError, KernelError) and issubclass(LinkError, KernelError)


def test_a_recreated_link_reconciles_only_its_domain_once_it_has_settled(two_domains):
    w = two_domains
    forgotten = []
    w.changes.selector.forget = forgotten.append
    w.changes.links.heal()
    w.session.on_message(w.client, None, message("wireguard/ffmuc_welt/all", KEY1, 1))
    w.session.on_message(w.client, None, message("wireguard/ffmuc_uml/all", KEY2, 2))
    w.apply_keys(list(w.drain()))
    w.changes.links.fdb.clear()  # both VXLAN devices lost their FDB entries ...
    # ... but only uml's was seen recreated (linkwatch.py), in several steps
    w._handle([LinkChanged("ffmuc_uml", "vx-uml", "appeared"), LinkChanged("ffmuc_uml", "vx-uml", "came up")])
    w.reconcile_relinked(time.monotonic())  # within the settle time: nothing yet
    assert not w.changes.links.fdb
    w.reconcile_relinked(time.monotonic() + LINK_SETTLE_S)
    assert w.changes.links.fdb == {derive.lladdr_from_key(KEY2)}
    assert forgotten == ["wg-uml"]  # the WireGuard backend is chosen again for a new device
    w.reconcile_relinked(time.monotonic() + 10 * LINK_SETTLE_S)
    assert forgotten == ["wg-uml"], "one reconcile for the events of one settle time"
