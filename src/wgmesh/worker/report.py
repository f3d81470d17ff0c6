"""What the broker reads from each worker: per-domain data (endpoint) and connected-peer counts,
retained on the topics in protocol.py (docs/worker.md, "MQTT behaviour")."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable

from wgmesh import protocol
from wgmesh.worker.backend import Device
from wgmesh.worker.changes import KernelChanges
from wgmesh.worker.domains import DomainLinks
from wgmesh.worker.links import LinkError
from wgmesh.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


class Reporter:
    def __init__(
        self,
        name: str,
        external_name: str,
        changes: KernelChanges,
        metrics: WorkerMetrics,
        publish: Callable[..., None],
        clock: Callable[[], float],
    ):
        self.name = name
        self.external_name = external_name
        self.changes = changes
        self.metrics = metrics
        self.publish = publish
        self.clock = clock

    def connected_peers(self, device: Device | None) -> int:
        if device is None:
            return protocol.METRICS_OFFLINE
        cutoff = self.clock() - protocol.HANDSHAKE_ACTIVE_S
        return sum(1 for p in device.peers.values() if p.last_handshake >= cutoff)

    def publish_metrics(self, domains: Iterable[DomainLinks]) -> None:
        for dom in domains:
            count = self.connected_peers(self.changes.device(dom))
            self.metrics.connected.labels(dom.domain).set(count)
            self.publish(protocol.topic_metrics(dom.domain, self.name), str(count), qos=protocol.QOS_METRICS)

    def publish_data(self, domains: Iterable[DomainLinks]) -> None:
        for dom in domains:
            device = self.changes.device(dom)
            try:
                address = self.changes.links.link_local(dom.wg)
            except LinkError as exc:
                self.changes.failed(dom, "reading the link-local address", exc)
                continue
            if device is None or device.public_key is None or address is None:
                log.warning(
                    "domain %s: %s not ready (key, port or link-local address missing); no data published",
                    dom.domain,
                    dom.wg,
                )
                continue
            data = {
                "ExternalAddress": self.external_name,
                "Port": device.listen_port,
                "PublicKey": device.public_key,
                "LinkAddress": str(address),
            }
            self.publish(protocol.topic_data(self.name, dom.domain), json.dumps(data), qos=protocol.QOS_DATA)
