"""The domains one worker serves, and the interfaces and derivation rule of each."""

from __future__ import annotations

from dataclasses import dataclass

from wgmesh import derive
from wgmesh.config import Config


@dataclass(frozen=True)
class DomainLinks:
    domain: str
    wg: str
    vx: str
    rule: str


def domain_links(cfg: Config) -> list[DomainLinks]:
    """Derived names (wg-<dom>, vx-<dom>), overridden by `worker.interfaces`."""
    out = []
    for domain in cfg.domains:
        names = derive.interface_names(domain, cfg.domain_prefixes)
        names.update(cfg.worker.interfaces.get(domain, {}))
        out.append(DomainLinks(domain, names["wg"], names["vx"], cfg.rule_for(domain)))
    return out
