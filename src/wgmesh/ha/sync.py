"""The sync channel's messages: what the active member of a pair tells its partner per domain
(docs/ha.md, "The sync channel"). Pure encoding and checking; the worker sends and follows them
(wgmesh.worker.hasync).

    topic   wgmesh-ha/<identity>/<client id>/<domain>/peers  (protocol.TOPIC_HA_PEERS), retained QoS 1
    payload {"time": <epoch s>, "keys": [<public key>, ...], "endpoints": {<public key>: "ip:port", ...},
             "dropped": {<public key>: <epoch s>, ...}}

`keys` are the keys the member holds (its journal), `endpoints` those of its peers with a recent
handshake, static peers included, `dropped` the keys it removed lately and when. The partner
removes exactly those: a key merely missing from `keys` (a member that lost its journal) is not a
removal. A message is checked whole: one bad entry rejects it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from wgmesh import protocol
from wgmesh.ha import endpoints


class SyncError(ValueError):
    """A message that cannot be used; str() says why (the caller names the topic)."""


@dataclass(frozen=True)
class PartnerPeers:
    domain: str
    client_id: str  # the member that sent it
    time: float  # when the partner took it (epoch seconds, its clock)
    keys: frozenset[str]
    endpoints: Mapping[str, str]
    dropped: Mapping[str, float]  # key -> when the partner removed it


def encode(keys: Collection[str], learnt: Mapping[str, str], now: float, dropped: Mapping[str, float]) -> str:
    data = {
        "time": round(now, 3),
        "keys": sorted(keys),
        "endpoints": dict(sorted(learnt.items())),
        "dropped": {k: round(t, 3) for k, t in sorted(dropped.items())},
    }
    return json.dumps(data, separators=(",", ":"))


def _is_time(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def decode(topic: str, payload: bytes, identity: str, domains: Collection[str]) -> PartnerPeers:
    """The message on `topic`, checked; raises SyncError."""
    parts = protocol.split_topic(topic)
    pattern = protocol.split_topic(protocol.TOPIC_HA_PEERS_SUB.format(identity=identity))
    if len(parts) != len(pattern) or any(p != want for p, want in zip(parts, pattern, strict=True) if want != "+"):
        raise SyncError(f"not a sync topic of identity {identity}")
    client_id, domain = parts[2], parts[3]
    if domain not in domains:
        raise SyncError(f"domain {domain!r} is not one of this gateway's ({', '.join(domains)})")
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SyncError(f"not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise SyncError('expected a JSON object {"time", "keys", "endpoints", "dropped"}')
    when = data.get("time")
    if not _is_time(when):
        raise SyncError(f"time: must be a number (epoch seconds), got {when!r}")
    keys = data.get("keys")
    if not isinstance(keys, list):
        raise SyncError(f"keys: must be a list of public keys, got {type(keys).__name__}")
    bad = next((k for k in keys if not protocol.is_valid_key(k)), None)
    if bad is not None:
        raise SyncError(f"keys: {str(bad)[:60]!r} is not a WireGuard public key")
    dropped = data.get("dropped")
    if not isinstance(dropped, Mapping):
        raise SyncError(f"dropped: must map public keys to times, got {type(dropped).__name__}")
    for key, at in dropped.items():
        if not protocol.is_valid_key(key):
            raise SyncError(f"dropped: {key[:60]!r} is not a WireGuard public key")
        if not _is_time(at):
            raise SyncError(f"dropped.{key}: must be a number (epoch seconds), got {at!r}")
    try:
        learnt = endpoints.parse({"domains": {domain: data.get("endpoints")}}, [domain], "endpoints")
    except endpoints.EndpointsError as exc:
        raise SyncError(str(exc)) from None
    return PartnerPeers(domain, client_id, float(when), frozenset(keys), learnt[domain], dict(dropped))
