"""Naive baseline for bench/broker_bench.py: the broker's handler served synchronously.

Upstream wgkex's stack (Flask on waitress, 4 worker threads by default) with
our handler logic (same parsing, gateway choice and PUBACK wait), so the
benchmark shows what the async server buys, not what a different handler
does. Benchmark-only: needs `pip install flask waitress` in the venv.

    python bench/broker_baseline_flask.py --config FILE
"""

from __future__ import annotations

import argparse
import logging
import threading

import waitress
from flask import Flask, jsonify, request

from wgmesh import mqtt, protocol
from wgmesh.broker.abuse import KeyLists
from wgmesh.broker.api import ApiError, parse_exchange_body
from wgmesh.broker.registry import Registry
from wgmesh.config import load_or_exit


def make_app(cfg):
    registry = Registry(cfg.weight_of)
    lock = threading.Lock()
    keylists = KeyLists(cfg.broker)
    client = mqtt.make_client(cfg.mqtt)
    client.max_inflight_messages_set(1000)

    def on_connect(c, userdata, flags, rc, props):
        c.subscribe([(protocol.TOPIC_STATUS_SUB, 1), (protocol.TOPIC_METRICS_SUB, 1), (protocol.TOPIC_DATA_SUB, 1)])

    def on_message(c, userdata, msg):
        with lock:
            registry.handle(msg.topic, msg.payload)

    client.on_connect = on_connect
    client.on_message = on_message
    mqtt.connect_async(client, cfg.mqtt)
    client.loop_start()

    app = Flask("wgkex-baseline")

    def exchange(version: str):
        try:
            domain, key = parse_exchange_body(request.get_data(), cfg)
            if (why := keylists.refusal(domain, key)) is not None:
                raise ApiError(403, why)
            info = client.publish(protocol.topic_key(domain), key, qos=protocol.QOS_KEY)
            info.wait_for_publish(timeout=cfg.broker.publish_timeout)  # blocks this worker thread
            if not info.is_published():
                raise ApiError(503, "key not stored, retry later")
            if version == "v1":
                return jsonify({"Message": "OK"})
            with lock:
                worker = registry.choose(domain)
                if worker is None:
                    raise ApiError(400, f"no gateway online for domain {domain}")
                endpoint = registry.endpoint(worker, domain)
                if endpoint is None:
                    raise ApiError(500, "gateway data missing")
                registry.note_assigned(worker, domain)
            return jsonify({"Endpoint": endpoint.as_json()})
        except ApiError as exc:
            return jsonify({"error": {"message": exc.message}}), exc.status
        except (RuntimeError, ValueError) as exc:
            return jsonify({"error": {"message": str(exc)}}), 503

    app.add_url_rule(protocol.PATH_V1_EXCHANGE, "v1", lambda: exchange("v1"), methods=["POST"])
    app.add_url_rule(protocol.PATH_V2_EXCHANGE, "v2", lambda: exchange("v2"), methods=["POST"])
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    cfg = load_or_exit(args.config)
    logging.basicConfig(level=logging.WARNING)
    waitress.serve(make_app(cfg), host=cfg.broker_listen.host, port=cfg.broker_listen.port, _quiet=True)


if __name__ == "__main__":
    main()
