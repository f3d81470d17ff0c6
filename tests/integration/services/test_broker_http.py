"""The real broker process against a real mosquitto, over real HTTP on loopback."""

from __future__ import annotations

import contextlib
import json
import queue
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.support.broker import exchange
from tests.support.keys import new_key
from wgmesh import mqtt
from wgmesh.config import MqttConfig
from wgmesh.protocol import PATH_V1_EXCHANGE, PATH_V2_EXCHANGE

V1, V2 = PATH_V1_EXCHANGE, PATH_V2_EXCHANGE
GW_KEY = "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg="


class Subscriber:
    """A test MQTT client collecting messages; a persistent session if client_id is given."""

    def __init__(self, mq, topic: str, client_id: str | None = None):
        self.messages: queue.Queue = queue.Queue()
        self.subscribed = threading.Event()
        cfg = MqttConfig(broker_url=mq.host, broker_port=mq.port)
        self.client = mqtt.make_client(cfg, client_id=client_id, clean_start=client_id is None)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, msg: self.messages.put((msg.topic, msg.payload.decode()))
        mqtt.connect_async(self.client, cfg)
        self.client.loop_start()
        assert self.subscribed.wait(10), "test subscriber could not subscribe"

    def get(self, timeout: float = 10) -> tuple[str, str]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribers():
    made: list[Subscriber] = []

    def make(*args, **kw) -> Subscriber:
        sub = Subscriber(*args, **kw)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


def publish_worker(mq, worker: str, domain: str, peers: int, port: int = 51820, auth=(None, None)) -> None:
    """What a worker publishes (retained): status, connected_peers and data."""
    cfg = MqttConfig(broker_url=mq.host, broker_port=mq.port, username=auth[0], password=auth[1])
    client = mqtt.make_client(cfg)
    client.connect(mq.host, mq.port)
    client.loop_start()
    data = {"ExternalAddress": f"{worker}.example.net", "Port": port, "PublicKey": GW_KEY, "LinkAddress": "fe80::1"}
    infos = [
        client.publish(f"wireguard-worker/{worker}/status", "1", qos=1, retain=True),
        client.publish(f"wireguard-metrics/{domain}/{worker}/connected_peers", str(peers), qos=1, retain=True),
        client.publish(f"wireguard-worker/{worker}/{domain}/data", json.dumps(data), qos=1, retain=True),
    ]
    for info in infos:
        info.wait_for_publish(timeout=10)
    client.disconnect()
    client.loop_stop()


def test_v1_key_reaches_workers_topic(mosquitto, broker_factory, subscribers):
    broker = broker_factory(mosquitto)
    broker.wait_healthy()
    sub = subscribers(mosquitto, "wireguard/+/all")
    key = new_key()
    # busybox wget: JSON body, form Content-Type
    status, data = exchange(broker, V1, "ffmuc_welt", key, {"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, data) == (200, {"Message": "OK"})
    assert sub.get() == ("wireguard/ffmuc_welt/all", key)


def test_v2_picks_least_loaded_worker_from_retained_state(mosquitto, broker_factory, subscribers):
    # Retained state exists before the broker starts: it must subscribe on connect.
    publish_worker(mosquitto, "gw1", "ffmuc_welt", peers=20, port=40001)
    publish_worker(mosquitto, "gw2", "ffmuc_welt", peers=19, port=40002)
    broker = broker_factory(mosquitto)
    broker.wait_healthy()
    sub = subscribers(mosquitto, "wireguard/+/all")
    key = new_key()
    # /health says 200 only once the retained state is loaded: the very first
    # v2 answer must already know both workers (upstream: "no gateway online").
    status, data = exchange(broker, V2, "ffmuc_welt", key)
    assert status == 200, data
    assert data == {
        "Endpoint": {"Address": "gw2.example.net", "Port": "40002", "AllowedIPs": ["fe80::1"], "PublicKey": GW_KEY}
    }
    assert sub.get() == ("wireguard/ffmuc_welt/all", key)
    # A metrics update published while the broker runs changes the choice.
    publish_worker(mosquitto, "gw1", "ffmuc_welt", peers=5, port=40001)
    deadline = time.monotonic() + 10
    while data["Endpoint"]["Address"] != "gw1.example.net" and time.monotonic() < deadline:
        time.sleep(0.1)
        status, data = exchange(broker, V2, "ffmuc_welt", new_key())
    assert status == 200
    assert data["Endpoint"]["Port"] == "40001"
    # No worker for the other domain: 400 with the wgkex error shape.
    status, data = exchange(broker, V2, "ffmuc_uml", new_key())
    assert status == 400
    assert data == {"error": {"message": "no gateway online for domain ffmuc_uml"}}


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"not json", {}, 400, "not valid JSON"),
        (b'{"domain": "ffmuc_welt", "public_key": "abc"}', {}, 400, "is not a WireGuard public key"),
        (
            b'{"domain": "ffmuc_other", "public_key": "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="}',
            {},
            400,
            "not served",
        ),
        (b"{" + b" " * 100_000 + b"}", {}, 413, "exceeds the limit"),
    ],
)
def test_bad_input_over_http(mosquitto, broker_factory, body, headers, status, message):
    broker = broker_factory(mosquitto)
    got_status, data = broker.request("POST", V2, body, headers)
    assert got_status == status
    assert message in data["error"]["message"]


def test_mosquitto_down_is_503_never_200_and_drop(mosquitto, broker_factory, subscribers):
    broker = broker_factory(mosquitto, broker={"publish_timeout": 1.0})
    broker.wait_healthy()
    # A persistent session stands in for a worker: it must get every key answered 200.
    sub = subscribers(mosquitto, "wireguard/+/all", client_id="h5-test-worker")
    answered: dict[str, int] = {}
    stop = threading.Event()

    def post_keys():
        while not stop.is_set():
            key = new_key()
            answered[key] = exchange(broker, V1, "ffmuc_welt", key)[0]
            time.sleep(0.01)

    poster = threading.Thread(target=post_keys)
    poster.start()
    try:
        time.sleep(0.5)
        mosquitto.stop()
        broker.wait_healthy(503)
        status, data = exchange(broker, V1, "ffmuc_welt", new_key())
        assert status == 503
        assert "retry later" in data["error"]["message"]
        mosquitto.start()
        broker.wait_healthy(200)
        time.sleep(0.5)
    finally:
        stop.set()
        poster.join()
    assert exchange(broker, V1, "ffmuc_welt", new_key())[0] == 200
    statuses = set(answered.values())
    assert statuses <= {200, 503}, statuses
    assert 503 in statuses and 200 in statuses
    ok = {k for k, s in answered.items() if s == 200}
    seen: set[str] = set()
    deadline = time.monotonic() + 20
    while not ok <= seen and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            seen.add(sub.get(timeout=1)[1])
    assert ok - seen == set(), f"{len(ok - seen)} of {len(ok)} keys answered 200 never reached the worker topic"


def test_mqtt_password_auth(mosquitto_factory, broker_factory, subscribers):
    mq = mosquitto_factory(users={"wgkex": "right-password", "tester": "t"})
    good = broker_factory(mq, mqtt={"username": "wgkex", "password": "right-password"})
    good.wait_healthy()
    status = exchange(good, V1, "ffmuc_welt", new_key())[0]
    assert status == 200

    bad = broker_factory(mq, mqtt={"username": "wgkex", "password": "wrong"})
    data = bad.wait_healthy(503)
    deadline = time.monotonic() + 10  # "not connected yet" until the CONNACK refusal arrives
    while "check mqtt" not in data["error"]["message"] and time.monotonic() < deadline:
        time.sleep(0.1)
        data = bad.wait_healthy(503)
    assert "check mqtt.username/mqtt.password" in data["error"]["message"]
    status, data = exchange(bad, V1, "ffmuc_welt", new_key())
    assert status == 503
    deadline = time.monotonic() + 10
    while "refused the connection" not in bad.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "MQTT broker refused the connection: not authorised" in bad.log()
    assert "wrong" not in bad.log()  # the password is never logged


def test_mqtt_tls_with_own_ca(mosquitto_factory, broker_factory, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path / "pki"
    d.mkdir()

    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", "/CN=h5 test CA", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt")  # fmt: skip
    mq = mosquitto_factory(
        tls={"cafile": str(d / "ca.crt"), "certfile": str(d / "server.crt"), "keyfile": str(d / "server.key")}
    )
    broker = broker_factory(mq, mqtt={"tls": True, "ca_certs": str(d / "ca.crt")})
    broker.wait_healthy()
    assert exchange(broker, V1, "ffmuc_welt", new_key())[0] == 200
    # A CA the server's certificate does not chain to: no connection, a clear health error.
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", "/CN=other CA", "-keyout", "other.key", "-out", "other.crt")  # fmt: skip
    untrusting = broker_factory(mq, mqtt={"tls": True, "ca_certs": str(d / "other.crt")})
    data = untrusting.wait_healthy(503)
    assert data["mqtt"] == "disconnected"
    assert exchange(untrusting, V1, "ffmuc_welt", new_key())[0] == 503


def test_config_error_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("domains: [ffmuc_welt]\ndomain_prefixes: [ffmuc_]\nmqtt: {broker_port: abc}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "wgmesh.broker", "--config", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr == f"config {path}: mqtt.broker_port: must be an integer 1-65535, got 'abc'\n"


def test_hung_mosquitto_gives_503_after_publish_timeout(mosquitto, broker_factory):
    broker = broker_factory(mosquitto, broker={"publish_timeout": 0.5})
    broker.wait_healthy()
    mosquitto.pause()  # TCP stays up, no PUBACK ever comes
    try:
        status, data = exchange(broker, V1, "ffmuc_welt", new_key())
        assert status == 503
        assert "did not acknowledge within 0.5s" in data["error"]["message"]
    finally:
        mosquitto.resume()
    deadline = time.monotonic() + 20
    status = 0
    while status != 200 and time.monotonic() < deadline:
        status = exchange(broker, V1, "ffmuc_welt", new_key())[0]
    assert status == 200


def test_subscriptions_are_renewed_after_reconnect(mosquitto, broker_factory):
    publish_worker(mosquitto, "gw1", "ffmuc_welt", peers=100_000, port=40001)  # local +1s cannot catch up
    publish_worker(mosquitto, "gw2", "ffmuc_welt", peers=10, port=40002)
    broker = broker_factory(mosquitto)
    broker.wait_healthy()
    mosquitto.restart()  # the broker's clean session loses its subscriptions
    broker.wait_healthy(200)
    # Only a broker that subscribed again on reconnect sees this update.
    publish_worker(mosquitto, "gw1", "ffmuc_welt", peers=0, port=40001)
    publish_worker(mosquitto, "gw2", "ffmuc_welt", peers=60, port=40002)
    deadline = time.monotonic() + 20
    port = None
    while port != "40001" and time.monotonic() < deadline:
        status, data = exchange(broker, V2, "ffmuc_welt", new_key())
        port = data.get("Endpoint", {}).get("Port") if status == 200 else None
        time.sleep(0.1)
    assert port == "40001", broker.log()[-2000:]


def test_documented_acl_is_enough(mosquitto_factory, broker_factory, subscribers):
    # The ACL docs/broker.md gives the broker's MQTT user, plus a worker-like user.
    acl = (
        "user broker\n"
        "topic write wireguard/+/all\n"
        "topic read wireguard-worker/#\n"
        "topic read wireguard-metrics/#\n"
        "topic readwrite wgmesh-broker/#\n"
        "\n"
        "user gw1\n"
        "topic read wireguard/+/all\n"
        "topic write wireguard-worker/gw1/#\n"
        "topic write wireguard-metrics/+/gw1/#\n"
    )
    mq = mosquitto_factory(users={"broker": "b", "gw1": "g"}, acl=acl)
    publish_worker(mq, "gw1", "ffmuc_welt", peers=1, port=40001, auth=("gw1", "g"))
    broker = broker_factory(mq, mqtt={"username": "broker", "password": "b"})
    broker.wait_healthy()  # 200 needs the sync marker back: the ACL allows it
    assert "no echo on" not in broker.log()
    status, data = exchange(broker, V2, "ffmuc_welt", new_key())
    assert status == 200, data
    assert data["Endpoint"]["Port"] == "40001"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_busybox_wget_like_a_gluon_node(mosquitto, broker_factory, subscribers, version):
    # The exact call of the Gluon client: busybox wget --post-data (form Content-Type).
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox not installed (Debian package busybox)")
    publish_worker(mosquitto, "gw1", "ffmuc_welt", peers=3, port=40001)
    broker = broker_factory(mosquitto)
    broker.wait_healthy()
    sub = subscribers(mosquitto, "wireguard/+/all")
    key = new_key()
    post = '{"domain": "ffmuc_welt","public_key": "' + key + '"}'
    url = f"{broker.url}/api/{version}/wg/key/exchange"
    proc = subprocess.run(
        [busybox, "wget", "-q", "-O-", f"--post-data={post}", url], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    if version == "v1":
        assert answer == {"Message": "OK"}
    else:
        assert answer["Endpoint"] == {
            "Address": "gw1.example.net",
            "Port": "40001",
            "AllowedIPs": ["fe80::1"],
            "PublicKey": GW_KEY,
        }
    assert sub.get() == ("wireguard/ffmuc_welt/all", key)
    # A key with a trailing newline (as `wg pubkey` prints it) is refused, and wget fails.
    bad = '{"domain": "ffmuc_welt","public_key": "' + key + '\\n"}'
    proc = subprocess.run(
        [busybox, "wget", "-q", "-O-", f"--post-data={bad}", url], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "400" in proc.stderr


def test_burst_spreads_over_equal_workers_and_shows_in_metrics(mosquitto, broker_factory):
    # Between two metrics updates the local +1 per answer must spread a burst of
    # registrations instead of sending all of them to the emptiest gateway.
    publish_worker(mosquitto, "gw1", "ffmuc_welt", peers=10, port=40001)
    publish_worker(mosquitto, "gw2", "ffmuc_welt", peers=12, port=40002)
    broker = broker_factory(mosquitto)
    broker.wait_healthy()
    ports = []
    for _request in range(12):
        status, data = exchange(broker, V2, "ffmuc_welt", new_key())
        assert status == 200, data
        ports.append(data["Endpoint"]["Port"])
    assert ports[:2] == ["40001", "40001"]  # 10 -> 12 peers before gw2 gets its turn
    assert ports.count("40001") == 7
    assert ports.count("40002") == 5  # both end at 17
    status, _body = broker.request("GET", "/metrics")
    assert status == 200
    text = _body["raw"]
    assert 'wgmesh_broker_requests_total{endpoint="v2",status="200"} 12.0' in text
    assert 'wgmesh_broker_worker_connected_peers{domain="ffmuc_welt",worker="gw1"} 10.0' in text
    assert "wgmesh_broker_workers_online 2.0" in text
    assert "wgmesh_broker_mqtt_connected 1.0" in text


SLOW_CLIENTS = 1100  # over the broker's RLIMIT_NOFILE of 1,024


def test_slow_clients_over_the_fd_limit_do_not_lock_out_a_node(mosquitto, broker_factory, subscribers):
    # The outside run: 1,100 idle or half-sent connections against a broker with
    # RLIMIT_NOFILE 1024 made a real POST time out, kept 841 of them open 90 s
    # later and logged "Too many open files" 14 MB deep. Default timeouts here.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # This test process holds the 1,100 client sockets itself: it needs more than the broker's
    # 1,024. Debian's default soft limit is 1,024; any process may raise it up to the hard limit.
    needed = SLOW_CLIENTS + 256
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs RLIMIT_NOFILE hard >= {needed} for the test's own sockets, got {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the broker process inherits it
    try:
        broker = broker_factory(mosquitto)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    broker.wait_healthy()
    sub = subscribers(mosquitto, "wireguard/+/all")
    slow_requests = [
        b"",
        f"POST {V1} HTTP/1.1\r\nHost: broker\r\n".encode(),
        f"POST {V1} HTTP/1.1\r\nHost: broker\r\nContent-Length: 300\r\n\r\n".encode() + b'{"domain": ',
    ]
    slow = []
    try:
        for i in range(SLOW_CLIENTS):
            conn = socket.create_connection(("127.0.0.1", broker.port))
            conn.sendall(slow_requests[i % 3])
            slow.append(conn)
        key = new_key()
        status, data = exchange(broker, V1, "ffmuc_welt", key)
        assert (status, data) == (200, {"Message": "OK"})
        assert sub.get() == ("wireguard/ffmuc_welt/all", key)
        still_open = [conn for conn in slow if not closed_by_peer(conn, timeout=60)]
        assert still_open == []
    finally:
        for conn in slow:
            conn.close()
    log = broker.log()
    assert "Too many open files" not in log
    assert len(log) < 100_000, f"log grew to {len(log)} bytes"


def closed_by_peer(conn: socket.socket, timeout: float) -> bool:
    """Read until the server closes the connection (EOF or reset); False if it stays open."""
    conn.settimeout(timeout)
    try:
        while conn.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_behind_nginx_on_the_same_host_the_mesh_is_not_one_client(mosquitto, broker_factory):
    # wgkex's config as is (no trusted_proxies), default rate limit, every node via 127.0.0.1.
    broker = broker_factory(mosquitto, broker={"rate_limit": {"per_client_per_minute": 30, "burst": 10}})
    broker.wait_healthy()
    for node in range(25):
        status, data = exchange(broker, V1, "ffmuc_welt", new_key(), {"X-Forwarded-For": f"198.51.100.{node}"})
        assert status == 200, data
    warned = [line.split(": ", 1)[0] for line in broker.log().splitlines() if "broker.trusted_proxies" in line]
    # once at start (listening on loopback), once at the first such request; not per request
    assert [w.split()[-1] for w in warned] == ["wgmesh.config", "wgmesh.broker.api"], warned
