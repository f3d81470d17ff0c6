"""What the workers report over MQTT, and the v2 gateway choice (docs/broker.md "Gateway choice (v2)").

Only the asyncio thread touches a Registry: the MQTT transport hands every
message over with loop.call_soon_threadsafe.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from wgmesh import protocol

log = logging.getLogger(__name__)


@dataclass
class WorkerState:
    name: str
    online: bool = False
    peers: dict[str, int] = field(default_factory=dict)  # domain -> connected_peers (-1 offline)
    data: dict[str, dict] = field(default_factory=dict)  # domain -> data message
    # +1 per node we sent here since the worker's last metrics for that domain.
    assigned: dict[str, int] = field(default_factory=dict)
    # domain -> the v2 answer built from `data` (None: incomplete); built once per data message
    endpoints: dict[str, Endpoint | None] = field(default_factory=dict)

    def serves(self, domain: str) -> bool:
        return self.online and self.peers.get(domain, -1) >= 0

    def total_peers(self) -> int:
        domains = self.peers.keys() | self.assigned.keys()
        return sum(max(self.peers.get(d, 0), 0) + self.assigned.get(d, 0) for d in domains)


@dataclass(frozen=True)
class Endpoint:
    """The v2 answer's Endpoint object, built from a worker's data message."""

    address: str
    port: str
    allowed_ips: tuple[str, ...]
    public_key: str

    def as_json(self) -> dict:
        return {
            "Address": self.address,
            "Port": self.port,
            "AllowedIPs": list(self.allowed_ips),
            "PublicKey": self.public_key,
        }


class Registry:
    def __init__(self, weight_of: Callable[[str], float]):
        self.workers: dict[str, WorkerState] = {}
        self._weight_of = weight_of

    def _worker(self, name: str) -> WorkerState:
        if name not in self.workers:
            self.workers[name] = WorkerState(name)
        return self.workers[name]

    # --- MQTT input -------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> None:
        """Apply one status/metrics/data message; malformed ones are logged and dropped."""
        parts = protocol.split_topic(topic)
        text = payload.decode("utf-8", errors="replace").strip()
        try:
            if len(parts) == 3 and parts[0] == "wireguard-worker" and parts[2] == "status":
                self.set_status(parts[1], text)
            elif len(parts) == 4 and parts[0] == "wireguard-metrics" and parts[3] == "connected_peers":
                self.set_peers(parts[2], parts[1], text)
            elif len(parts) == 4 and parts[0] == "wireguard-worker" and parts[3] == "data":
                self.set_data(parts[1], parts[2], text)
        except ValueError as exc:
            log.warning("ignoring MQTT message on %s: %s", topic, exc)

    def set_status(self, worker: str, text: str) -> None:
        if text == "":  # retained message cleared: the worker is gone
            self._worker(worker).online = False
            return
        try:
            self._worker(worker).online = int(text) >= 1
        except ValueError:
            raise ValueError(f"status must be an integer, got {text[:40]!r}") from None

    def set_peers(self, worker: str, domain: str, text: str) -> None:
        state = self._worker(worker)
        if text == "":
            state.peers.pop(domain, None)
        else:
            try:
                state.peers[domain] = int(text)
            except ValueError:
                raise ValueError(f"connected_peers must be an integer, got {text[:40]!r}") from None
        state.assigned.pop(domain, None)  # the worker's own count now includes them

    def set_data(self, worker: str, domain: str, text: str) -> None:
        state = self._worker(worker)
        state.endpoints.pop(domain, None)
        if text == "":
            state.data.pop(domain, None)
            return
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"data is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("data must be a JSON object")
        state.data[domain] = data

    # --- gateway choice ---------------------------------------------------------

    def choose(self, domain: str) -> str | None:
        """The online worker for `domain` furthest below its weighted share, or None.

        peers = a worker's connected peers over all domains (plus the nodes we
        sent it since its last metrics); total = that sum over all known
        workers; target = weight / (sum of their weights) * total; smallest
        peers - target wins (ties: the name, for a stable answer).
        """
        candidates = [w for w in self.workers.values() if w.serves(domain)]
        if not candidates:
            return None
        known = [w for w in self.workers.values() if w.peers or w.assigned or w.online]
        total = sum(w.total_peers() for w in known)
        total_weight = sum(self._weight_of(w.name) for w in known) or 1.0

        def deficit(w: WorkerState) -> tuple[float, str]:
            target = self._weight_of(w.name) / total_weight * total
            return (w.total_peers() - target, w.name)

        return min(candidates, key=deficit).name

    def note_assigned(self, worker: str, domain: str) -> None:
        state = self._worker(worker)
        state.assigned[domain] = state.assigned.get(domain, 0) + 1

    def endpoint(self, worker: str, domain: str) -> Endpoint | None:
        """The worker's data for `domain` as an Endpoint, None if missing/incomplete."""
        state = self.workers.get(worker)
        if state is None:
            return None
        if domain not in state.endpoints:  # parsing the address on every request cost 5 % of the CPU
            state.endpoints[domain] = _endpoint_of(state.data.get(domain))
        return state.endpoints[domain]

    def online_workers(self) -> int:
        return sum(1 for w in self.workers.values() if w.online)


def _endpoint_of(data: dict | None) -> Endpoint | None:
    if not data or any(data.get(f) in (None, "") for f in protocol.DATA_FIELDS):
        return None
    link = str(data["LinkAddress"]).split("/", 1)[0].split("%", 1)[0]
    try:
        link = str(ipaddress.ip_address(link))
    except ValueError:
        return None
    return Endpoint(
        address=str(data["ExternalAddress"]),
        port=str(data["Port"]),
        allowed_ips=(link,),
        public_key=str(data["PublicKey"]),
    )
