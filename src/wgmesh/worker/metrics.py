"""Prometheus metrics of the worker, on their own registry and port (`worker.metrics_listen`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.keys_received = Counter(
            "wgmesh_worker_keys_received", "Valid keys received over MQTT", ["domain"], registry=r
        )
        self.keys_rejected = Counter(
            "wgmesh_worker_keys_rejected", "Malformed keys received and ignored", ["domain"], registry=r
        )
        self.key_errors = Counter(
            "wgmesh_worker_key_errors", "Keys that failed to apply (retried by reconcile)", ["domain"], registry=r
        )
        self.kernel_errors = Counter(
            "wgmesh_worker_kernel_errors",
            "Kernel-side failures (WireGuard, routes, FDB entries), each retried at the next reconcile",
            ["domain"],
            registry=r,
        )
        self.peers_added = Counter(
            "wgmesh_worker_peers_added", "Peers added or repaired in the kernel", ["domain"], registry=r
        )
        self.peers_removed = Counter(
            "wgmesh_worker_stale_peers_removed", "Peers removed as stale", ["domain"], registry=r
        )
        self.peers = Gauge("wgmesh_worker_peers", "Peers on the domain's WireGuard interface", ["domain"], registry=r)
        self.connected = Gauge(
            "wgmesh_worker_connected_peers",
            "Peers with a handshake in the last 180 s (-1: interface missing)",
            ["domain"],
            registry=r,
        )
        self.journal_keys = Gauge("wgmesh_worker_journal_keys", "Keys in the worker's journal", ["domain"], registry=r)
        self.journal_set_aside = Counter(
            "wgmesh_worker_journal_entries_set_aside",
            "Journal entries found damaged at start and set aside (an unreadable file counts as one)",
            registry=r,
        )
        self.mqtt_connected = Gauge("wgmesh_worker_mqtt_connected", "1 while the MQTT session is up", registry=r)
        self.apply_seconds = Histogram(
            "wgmesh_worker_apply_seconds",
            "Time to apply one batch of keys",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=r,
        )
        self.key_seconds = Histogram(
            "wgmesh_worker_key_seconds",
            "From a key's arrival over MQTT until its peer, route and FDB entry are in place",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 5),
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "wgmesh_worker_reconcile_seconds",
            "Time for one reconcile of all domains",
            buckets=(0.01, 0.1, 0.5, 1, 5, 30, 120),
            registry=r,
        )

    def serve(self, host: str, port: int):
        return start_http_server(port, addr=host, registry=self.registry)
