"""Broker and workers end to end: keys POSTed over HTTP appear on both gateways.

The real broker process (`broker_factory` from conftest.py), a real mosquitto, and two
workers in network namespaces with wireguard-go and VXLAN (tests/support/gateway.py).
"""

from __future__ import annotations

import json
import secrets
import threading
import time

from tests.support.gateway import PREFIX, Publisher, start_workers
from tests.support.keys import new_key
from tests.support.procs import wait_until
from wgmesh import derive
from wgmesh.protocol import PATH_V1_EXCHANGE, PATH_V2_EXCHANGE


def test_keys_posted_to_the_broker_reach_both_workers(gateways, mosquitto, broker_factory):
    domain = f"{PREFIX}{secrets.token_hex(3)}"
    publisher = Publisher(mosquitto.port)  # only watches the retained worker topics here
    try:
        pair = start_workers(gateways, mosquitto, publisher, domain)
        broker = broker_factory(mosquitto, domains=[domain], domain_prefixes=[PREFIX])
        broker.wait_healthy()
        keys = [new_key() for dummy in range(20)]

        def post(path, key):
            # nodes post JSON with busybox wget, whose Content-Type is not application/json
            body = json.dumps({"domain": domain, "public_key": key}).encode()
            return broker.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})

        # readiness: the broker answers v2 once it has read the workers' retained data
        wait_until(lambda: post(PATH_V2_EXCHANGE, keys[0])[0] == 200, what=f"broker ready\n{broker.log()[-2000:]}")
        answers = []
        for i, key in enumerate(keys):
            path = PATH_V2_EXCHANGE if i % 2 else PATH_V1_EXCHANGE
            status, data = post(path, key)
            assert status == 200, data
            answers.append((path, data))
        for gw in pair:
            wait_until(lambda gw=gw: gw.has_all(keys), what=f"posted keys on {gw.wg}\n{gw.log_text()}")
        # v2 answers name one of the two gateways with what its worker published
        by_address = {f"gw-{gw.id}.example.net": gw for gw in pair}
        for path, data in answers:
            if path == PATH_V1_EXCHANGE:
                assert data == {"Message": "OK"}
                continue
            endpoint = data["Endpoint"]
            gw = by_address[endpoint["Address"]]
            assert endpoint["Port"] == str(gw.listen_port)
            assert endpoint["PublicKey"] == gw.public_key
            assert endpoint["AllowedIPs"] == [gw.lladdr]
            assert str(derive.lladdr_from_key(gw.public_key)) == gw.lladdr
    finally:
        publisher.close()


def test_every_key_answered_200_reaches_both_workers_across_a_mosquitto_restart(
    gateways,
    mosquitto,
    broker_factory,
):
    domain = f"{PREFIX}{secrets.token_hex(3)}"
    watcher = Publisher(mosquitto.port)
    try:
        pair = start_workers(gateways, mosquitto, watcher, domain)
        broker = broker_factory(mosquitto, domains=[domain], domain_prefixes=[PREFIX])
        broker.wait_healthy()
        accepted, refused = [], []
        stop = threading.Event()

        def post_stream():
            while not stop.is_set():
                key = new_key()
                body = json.dumps({"domain": domain, "public_key": key}).encode()
                status, dummy = broker.request("POST", PATH_V1_EXCHANGE, body, {"Content-Type": "text/plain"})
                (accepted if status == 200 else refused).append((key, status))
                time.sleep(0.005)

        thread = threading.Thread(target=post_stream)
        thread.start()
        try:
            wait_until(lambda: len(accepted) >= 30, what="the stream to start")
            mosquitto.restart()
            wait_until(lambda: len(accepted) >= 120, timeout=60, what=f"keys accepted again\n{broker.log()[-2000:]}")
        finally:
            stop.set()
            thread.join(30)
        keys = [k for k, dummy in accepted]
        # a node whose POST was refused (503 while mosquitto was away) simply retries later
        assert all(status == 503 for dummy, status in refused), refused[:3]
        for gw in pair:
            wait_until(
                lambda gw=gw: gw.has_all(keys), timeout=60, what=f"all accepted keys on {gw.wg}\n{gw.log_text()}"
            )
    finally:
        watcher.close()
