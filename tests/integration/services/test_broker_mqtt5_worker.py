"""Workers on MQTT 5 against a real mosquitto: their persistent sessions outlive a disconnect.

An MQTT 5 session without a Session Expiry Interval ends at disconnect, so keys published
while a worker is away would be queued for nobody.
"""

from __future__ import annotations

from tests.support.gateway import start_workers
from tests.support.keys import new_key
from tests.support.procs import wait_until
from wgmesh import protocol


def test_keys_published_while_the_worker_is_down_arrive_after_it_returns(gateways, mosquitto, publisher, domain):
    (gw,) = start_workers(gateways, mosquitto, publisher, domain, count=1)
    gw.stop_worker()  # a clean MQTT 5 DISCONNECT: the session ends unless it has an expiry
    wait_until(lambda: publisher.retained.get(protocol.topic_status(gw.name)) == "0", what="worker offline")
    keys = [new_key() for dummy in range(30)]
    publisher.keys(domain, keys)
    gw.start_worker(mosquitto.port)
    wait_until(lambda: gw.has_all(keys), what=f"30 queued keys on {gw.wg}\n{gw.log_text()}")
