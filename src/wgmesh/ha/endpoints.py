"""The endpoints a standby learnt from its active partner, kept in one JSON file.

Written by the worker (the sync channel, wgmesh.worker.hasync) while this member is standby,
read only by `promote`: a standby that applied them would send to the nodes with the pair's
shared key and pull them away from a healthy active member (docs/ha.md). Format:

    {"domains": {"ffmuc_welt": {"<public key>": "198.51.100.7:51820", ...}, ...}}

The whole file is checked before anything is used: a bad entry rejects the file, with a
message naming the file, the domain and the key, so a promotion never applies half of it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping

from wgmesh import protocol
from wgmesh.config import WorkerConfig
from wgmesh.fsutil import write_atomic
from wgmesh.worker.backend import split_endpoint

DEFAULT_PATH = WorkerConfig.ha_endpoints_file  # the worker writes it, wgmesh-ha promote reads it

Learnt = dict[str, dict[str, str]]  # domain -> public key -> endpoint


class EndpointsError(Exception):
    """The file cannot be used; str() names the file and the entry."""


def parse(data: object, domains: Collection[str], path: str = "<data>") -> Learnt:
    if not isinstance(data, Mapping) or not isinstance(data.get("domains"), Mapping):
        raise EndpointsError(f'{path}: expected {{"domains": {{domain: {{key: endpoint}}}}}}')
    out: Learnt = {}
    for domain, entries in data["domains"].items():
        if domain not in domains:
            raise EndpointsError(f"{path}: domains.{domain}: not a domain of this gateway ({', '.join(domains)})")
        if not isinstance(entries, Mapping):
            raise EndpointsError(f"{path}: domains.{domain}: must map public keys to endpoints")
        for key, endpoint in entries.items():
            if not protocol.is_valid_key(key):
                raise EndpointsError(f"{path}: domains.{domain}: {key!r} is not a WireGuard public key")
            try:
                split_endpoint(endpoint if isinstance(endpoint, str) else repr(endpoint))
            except ValueError as exc:
                raise EndpointsError(f"{path}: domains.{domain}.{key}: {exc}") from None
        out[domain] = dict(entries)
    return out


def load(path: str, domains: Collection[str]) -> Learnt:
    """The learnt endpoints; an absent file is none learnt yet (a fresh standby), not an error."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise EndpointsError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise EndpointsError(f"{path}: not valid JSON: {exc}") from None
    return parse(data, domains, path)


def save(path: str, learnt: Mapping[str, Mapping[str, str]]) -> None:
    """Atomically: a promotion that reads while the sync channel writes sees the old or the new file."""
    write_atomic(path, json.dumps({"domains": learnt}, sort_keys=True).encode())
