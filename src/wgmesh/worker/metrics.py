"""Prometheus metrics of the worker, on their own registry and port (`worker.metrics_listen`),
with /health beside them (docs/worker.md, "Metrics and health")."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app


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
        self.journal_unwritten = Gauge(
            "wgmesh_worker_journal_unwritten_keys",
            "Keys applied and acknowledged but held in memory only: the journal cannot be written",
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

    def serve(self, host: str, port: int, problem: Callable[[], str | None]) -> WSGIServer:
        """/metrics (and every other path, as prometheus_client does) and /health: 200
        {"status": "ok"}, or 503 {"status": "degraded", "error": {"message": ...}} while
        `problem()` names one (the worker still serves keys then)."""
        metrics_app = make_wsgi_app(self.registry)

        def app(environ, start_response):
            if environ.get("PATH_INFO") != "/health":
                return metrics_app(environ, start_response)
            why = problem()
            body = {"status": "ok"} if why is None else {"status": "degraded", "error": {"message": why}}
            data = json.dumps(body).encode()
            status = "200 OK" if why is None else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]

        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up shutdown


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        """Scrapes are not worth a line each on stderr."""
