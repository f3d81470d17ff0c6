"""The worker against a real mosquitto, with wireguard-go and VXLAN in network namespaces.

Two gateways (namespaces h6-<id>, interfaces wg-<id>/vx-<id>) run one worker each for the
same domain; keys published on wireguard/<domain>/all must become a peer, a route and an FDB
entry on both, also across a killed worker and a restarted mosquitto.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time

import yaml

from tests.support.gateway import PREFIX, Publisher, start_workers
from tests.support.keys import new_key
from tests.support.procs import wait_until
from wgmesh import derive, protocol


def test_keys_become_peers_routes_and_fdb_on_two_workers(gateways, mosquitto, publisher, domain):
    pair = start_workers(gateways, mosquitto, publisher, domain)
    keys = [new_key() for dummy in range(25)]
    publisher.keys(domain, [*keys[:10], "not-a-key", keys[0] + "\n", *keys[10:]])
    for gw in pair:
        wait_until(lambda gw=gw: gw.has_all(keys), what=f"25 peers on {gw.wg}\n{gw.log_text()}")
        assert len(gw.peers()) == 25  # the malformed keys added nothing
        assert gw.worker_proc.poll() is None, "a malformed key must not stop the worker"
        assert "malformed key" in gw.log_text()
        # what the broker reads: status, data, connected_peers
        data = json.loads(wait_until(lambda gw=gw: publisher.retained.get(protocol.topic_data(gw.name, domain))))
        assert data == {
            "ExternalAddress": f"gw-{gw.id}.example.net",
            "Port": gw.listen_port,
            "PublicKey": gw.public_key,
            "LinkAddress": gw.lladdr,
        }
        assert wait_until(lambda gw=gw: publisher.retained.get(protocol.topic_metrics(domain, gw.name))) == "0"
        # the journal is written just after the kernel changes (grouped, off the apply thread)
        wait_until(lambda gw=gw: journal_keys(gw, domain) == set(keys), what="the journal to hold the keys")


def journal_keys(gw, dom: str) -> set[str]:
    try:
        return set(json.loads(gw.journal_path.read_text())["domains"].get(dom, {}))
    except (OSError, ValueError):
        return set()


def test_keys_published_while_a_worker_is_dead_are_applied_after_restart(gateways, mosquitto, publisher, domain):
    a, b = start_workers(gateways, mosquitto, publisher, domain)
    first = [new_key() for dummy in range(5)]
    publisher.keys(domain, first)
    wait_until(lambda: a.has_all(first) and b.has_all(first), what="first keys on both")
    b.stop_worker(hard=True)  # kill -9: no goodbye, the last will says offline
    wait_until(
        lambda: publisher.retained.get(protocol.topic_status(b.name)) == "0", what="last will of the killed worker"
    )
    later = [new_key() for dummy in range(40)]
    publisher.keys(domain, later)
    wait_until(lambda: a.has_all(later), what="keys on the live worker")
    assert not any(k in b.peers() for k in later)
    b.start_worker(mosquitto.port)
    wait_until(lambda: b.has_all(first + later), what=f"keys on the restarted worker\n{b.log_text()}")
    assert publisher.retained.get(protocol.topic_status(b.name)) == "1"


def test_mosquitto_restart_mid_stream_loses_nothing(gateways, mosquitto, publisher, domain):
    pair = start_workers(gateways, mosquitto, publisher, domain)
    keys = [new_key() for dummy in range(200)]
    errors: queue.Queue = queue.Queue()
    sent = []

    def publish_all():
        # a paced stream, one key at a time; paho holds the QoS 1 messages of its persistent
        # session while mosquitto is away and sends them after reconnecting
        try:
            for key in keys:
                publisher.client.publish(protocol.topic_key(domain), key, qos=protocol.QOS_KEY)
                sent.append(key)
                time.sleep(0.01)
        except Exception as exc:  # pragma: no cover - reported below
            errors.put(exc)

    thread = threading.Thread(target=publish_all)
    thread.start()
    wait_until(lambda: len(pair[0].peers()) >= 20, what="the stream to start")
    mosquitto.restart()
    restarted_after = len(sent)
    thread.join(120)
    assert errors.empty(), errors.get()
    assert restarted_after < len(keys), "mosquitto must restart while keys are still being published"
    for gw in pair:
        wait_until(lambda gw=gw: gw.has_all(keys), timeout=60, what=f"all 200 keys on {gw.wg}\n{gw.log_text()}")


def test_reconcile_restores_kernel_state_from_the_journal(gateways, mosquitto, publisher, domain):
    (gw,) = start_workers(gateways, mosquitto, publisher, domain, count=1, reconcile_interval=1)
    keys = [new_key() for dummy in range(6)]
    publisher.keys(domain, keys)
    wait_until(lambda: gw.has_all(keys), what="keys applied")
    # a gateway that lost its kernel state (interface recreated, route flushed, FDB cleared)
    gw.ns("wg", "set", gw.wg, "peer", keys[0], "remove")
    gw.ns("ip", "-6", "route", "del", f"{derive.lladdr_from_key(keys[1])}/128", "dev", gw.wg)
    lladdr2 = str(derive.lladdr_from_key(keys[2]))
    gw.ns("bridge", "fdb", "del", "00:00:00:00:00:00", "dev", gw.vx, "dst", lladdr2, "via", gw.wg)
    lladdr3 = str(derive.lladdr_from_key(keys[3]))
    gw.ns("wg", "set", gw.wg, "peer", keys[3], "allowed-ips", f"{lladdr3}/128,10.9.9.0/24")  # a stray extra
    assert not gw.has_all(keys)
    wait_until(lambda: gw.has_all(keys), what=f"reconcile to repair peer, allowed-ips, route, FDB\n{gw.log_text()}")
    # and after a restart without MQTT traffic the journal alone brings everything back
    gw.stop_worker()
    gw.ns("wg", "set", gw.wg, *[a for k in keys for a in ("peer", k, "remove")])
    assert gw.peers() == {}
    mosquitto.stop()  # reconcile on start must not wait for the broker
    gw.start_worker(mosquitto.port)
    wait_until(lambda: gw.has_all(keys), what=f"journal replay on start\n{gw.log_text()}")


def test_stale_peers_are_removed_but_static_and_fresh_ones_stay(gateways, mosquitto, publisher, domain):
    static = new_key()
    (gw,) = start_workers(
        gateways,
        mosquitto,
        publisher,
        domain,
        count=1,
        reconcile_interval=1,
        stale_after=3,
        grace_period=0,
        static_peers=[static],
    )
    gw.ns("wg", "set", gw.wg, "peer", static, "allowed-ips", "fe80::1234/128")
    keys = [new_key() for dummy in range(3)]
    publisher.keys(domain, keys)
    wait_until(lambda: gw.has_all(keys), what="keys applied")
    # removal must tolerate parts that are gone already: drop one route and one FDB entry first
    gw.ns("ip", "-6", "route", "del", f"{derive.lladdr_from_key(keys[0])}/128", "dev", gw.wg, check=False)
    lladdr1 = str(derive.lladdr_from_key(keys[1]))
    gw.ns("bridge", "fdb", "del", "00:00:00:00:00:00", "dev", gw.vx, "dst", lladdr1, "via", gw.wg, check=False)
    # no node ever handshakes here: after stale_after the peers go, with routes and FDB entries
    wait_until(lambda: not any(k in gw.peers() for k in keys), what=f"stale peers removed\n{gw.log_text()}")
    lladdrs = {str(derive.lladdr_from_key(k)) for k in keys}
    assert not lladdrs & gw.routes()
    assert not lladdrs & gw.fdb()
    assert static in gw.peers(), "a static peer is never touched"
    wait_until(lambda: not journal_keys(gw, domain) & set(keys), what="stale keys gone from the journal")
    assert gw.worker_proc.poll() is None


def test_authenticated_session_metrics_and_a_clear_error_for_a_wrong_password(gateways, mosquitto_factory, domain):
    mq = mosquitto_factory(users={"gw": "s3cret", "pub": "pub-pw"})
    good, bad = gateways(), gateways()
    good.write_config(domain, PREFIX, 1883, metrics_listen="127.0.0.1:9561")
    bad.write_config(domain, PREFIX, 1883)
    for gw, password in ((good, "s3cret"), (bad, "wrong")):
        cfg = yaml.safe_load(gw.config_path.read_text())
        cfg["mqtt"].update(username="gw", password=password)
        gw.config_path.write_text(yaml.safe_dump(cfg))
        gw.start_worker(mq.port)
    watcher = Publisher(mq.port, username="pub", password="pub-pw")
    try:
        wait_until(lambda: watcher.retained.get(protocol.topic_status(good.name)) == "1", what="good worker online")
        keys = [new_key() for dummy in range(3)]
        watcher.keys(domain, [*keys, "garbage"])
        wait_until(lambda: good.has_all(keys), what=f"keys with authentication\n{good.log_text()}")
        wait_until(
            lambda: "refused the connection" in bad.log_text() and "mqtt.password" in bad.log_text(),
            what=f"the refused worker's log line\n{bad.log_text()}",
        )
        assert bad.worker_proc.poll() is None  # keeps retrying, as after any broker outage
        assert "wrong" not in bad.log_text() and "s3cret" not in good.log_text()  # passwords never logged
        assert bad.peers() == {}
        script = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9561/metrics').read().decode())"
        metrics = good.ns(sys.executable, "-c", script)
        assert f'wgmesh_worker_keys_received_total{{domain="{domain}"}} 3.0' in metrics
        assert f'wgmesh_worker_keys_rejected_total{{domain="{domain}"}} 1.0' in metrics
        assert "wgmesh_worker_mqtt_connected 1.0" in metrics
    finally:
        watcher.close()


def test_a_low_order_key_published_to_the_worker_is_ignored(gateways, mosquitto, publisher, domain):
    (gw,) = start_workers(gateways, mosquitto, publisher, domain, count=1)
    zero = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="  # the all-zero Curve25519 point
    keys = [new_key() for dummy in range(3)]
    publisher.keys(domain, [keys[0], zero, *keys[1:]])
    wait_until(lambda: gw.has_all(keys), what=f"the valid keys\n{gw.log_text()}")
    assert zero not in gw.peers()
    assert "malformed key" in gw.log_text()
    assert zero not in journal_keys(gw, domain)
