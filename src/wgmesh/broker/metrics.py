"""Prometheus metrics of the broker, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from wgmesh.broker.registry import Registry


class BrokerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "wgmesh_broker_requests",
            "HTTP requests by endpoint and status code",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            "wgmesh_broker_publish_seconds",
            "Time from MQTT publish to mosquitto's acknowledgement",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.publish_failures = Counter(
            "wgmesh_broker_publish_failures",
            "Keys not acknowledged by MQTT (answered 503)",
            registry=self.registry,
        )
        self.mqtt_connected = Gauge("wgmesh_broker_mqtt_connected", "1 when connected to MQTT", registry=self.registry)
        self.workers_online = Gauge(
            "wgmesh_broker_workers_online", "Workers reporting status 1", registry=self.registry
        )
        self.worker_peers = Gauge(
            "wgmesh_broker_worker_connected_peers",
            "Connected peers a worker reports per domain (-1: offline for the domain)",
            ["worker", "domain"],
            registry=self.registry,
        )

    def render(self, registry: Registry, mqtt_connected: bool) -> tuple[bytes, str]:
        """Refresh the gauges from the worker registry, then the exposition text."""
        self.mqtt_connected.set(1 if mqtt_connected else 0)
        self.workers_online.set(registry.online_workers())
        self.worker_peers.clear()
        for worker in registry.workers.values():
            for domain, peers in worker.peers.items():
                self.worker_peers.labels(worker.name, domain).set(peers)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
