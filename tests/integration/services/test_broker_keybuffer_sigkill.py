"""A key answered 200 survives a mosquitto SIGKILL: the broker's key buffer publishes it again.

mosquitto here saves its persistence file only at a clean shutdown (autosave every hour), so a
SIGKILL loses every message it held in memory, as on a production box between two autosaves.
The workers' sessions are saved once beforehand (a clean restart), as autosave would have done
long ago for a running mesh: the buffer brings back keys, not sessions.
"""

from __future__ import annotations

import signal
import threading

import pytest

from tests.support.broker import exchange
from tests.support.gateway import PREFIX, start_workers
from tests.support.keys import new_key
from tests.support.mosquitto import Mosquitto
from tests.support.net import free_port
from tests.support.procs import wait_until
from wgmesh.protocol import PATH_V1_EXCHANGE as V1


class SlowSavingMosquitto(Mosquitto):
    def write_config(self) -> None:
        super().write_config()
        text = self.conf_path.read_text().replace("autosave_interval 1\n", "autosave_interval 3600\n")
        self.conf_path.write_text(text)

    def kill(self) -> None:
        """SIGKILL: no save, whatever was only in memory is gone."""
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path):  # overrides the conftest one for this module (the publisher uses it too)
    workdir = tmp_path / "mosquitto-slow"
    workdir.mkdir()
    mq = SlowSavingMosquitto(workdir=workdir, port=free_port())
    mq.start()
    yield mq
    mq.stop()


@pytest.fixture
def worker_and_buffering_broker(gateways, mosquitto, publisher, domain, broker_factory, tmp_path):
    """One gateway with its worker and a broker that keeps its keys on disk, both ready."""
    (gw,) = start_workers(gateways, mosquitto, publisher, domain, count=1)
    mosquitto.restart()  # saves the worker's session, as autosave does for a running mesh
    broker = broker_factory(
        mosquitto,
        domains=[domain],
        domain_prefixes=[PREFIX],
        broker={"key_buffer": str(tmp_path / "state" / "broker-keys.jsonl")},
    )
    broker.wait_healthy()
    return gw, broker


@pytest.mark.parametrize("worker_state", ["offline", "stalled"])
def test_keys_answered_200_survive_a_mosquitto_sigkill(worker_and_buffering_broker, mosquitto, domain, worker_state):
    gw, broker = worker_and_buffering_broker
    if worker_state == "offline":
        gw.stop_worker()  # its session stays, mosquitto queues its keys (in memory only)
    else:
        gw.worker_proc.send_signal(signal.SIGSTOP)  # connected, but takes nothing off the socket
    keys = [new_key() for dummy in range(50)]
    for key in keys:
        status, data = exchange(broker, V1, domain, key)
        assert status == 200, data
    mosquitto.kill()
    mosquitto.start()
    if worker_state == "offline":
        gw.start_worker(mosquitto.port)
    else:
        gw.worker_proc.send_signal(signal.SIGCONT)
    wait_until(lambda: "republished" in broker.log(), what=f"the broker's republish\n{broker.log()[-2000:]}")
    wait_until(lambda: gw.has_all(keys), timeout=60, what=f"50 keys on {gw.wg}\n{gw.log_text()}")


def test_every_key_answered_200_survives_a_sigkill_in_the_middle_of_a_stream(
    worker_and_buffering_broker, mosquitto, domain
):
    gw, broker = worker_and_buffering_broker
    answered: dict[str, int] = {}
    stop = threading.Event()

    def post_keys() -> None:  # four clients at once, each key once (a 503 is the node's to retry)
        def client() -> None:
            while not stop.is_set():
                key = new_key()
                answered[key] = exchange(broker, V1, domain, key)[0]

        threads = [threading.Thread(target=client) for dummy in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    poster = threading.Thread(target=post_keys)
    poster.start()
    wait_until(lambda: sum(s == 200 for s in answered.values()) >= 100, what="a stream of keys")
    mosquitto.kill()  # whatever was in flight, queued or half-delivered is gone from mosquitto
    mosquitto.start()
    wait_until(lambda: sum(s == 200 for s in list(answered.values())[-20:]) >= 10, what="keys answered 200 again")
    stop.set()
    poster.join()
    stored = [k for k, s in answered.items() if s == 200]
    refused = [k for k, s in answered.items() if s != 200]
    assert refused, "mosquitto must have been down for some requests"
    wait_until(lambda: gw.has_all(stored), timeout=60, what=f"{len(stored)} keys on {gw.wg}\n{gw.log_text()}")
