"""wgmesh-worker --drift: what a reconcile would change right now, changing nothing.

The worker's own parts do all the reading and deciding: the journal loader (read-only: a
damaged file is read as the daemon reads it, and left in place), the backend selection and
rtnetlink code, and Reconciler.survey(), which asks the same plan() the daemon's reconcile
carries out. This module only turns that plan into one line per finding (docs/worker.md,
"Drift").

Drift is what a reconcile would put back: a missing peer, wrong allowed-ips, a missing route
or FDB entry. Stale peers are listed but are not drift: removing them is the worker's own
cleanup on its own schedule, and this process cannot know when the daemon last put a peer
back (its grace period), so it could call a peer stale that the daemon keeps for a while.
A missing interface is listed too, but only the gateway role can make it; not drift either.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TextIO

from wgmesh.config import Config
from wgmesh.worker.backend import InterfaceMissing
from wgmesh.worker.changes import KernelChanges, lladdr
from wgmesh.worker.domains import DomainLinks, domain_links
from wgmesh.worker.errors import KernelError
from wgmesh.worker.journal import Journal, JournalError
from wgmesh.worker.links import Links
from wgmesh.worker.metrics import WorkerMetrics
from wgmesh.worker.reconciler import Reconciler, Survey
from wgmesh.worker.selector import BackendSelector

log = logging.getLogger(__name__)

EXIT_IN_SYNC = 0
EXIT_ERROR = 2  # config unusable, the journal unreadable, or a domain's kernel state could not be read
EXIT_DRIFT = 3  # a reconcile would change something (1 stays Python's own exit code for a crash)


@dataclass(frozen=True)
class Finding:
    domain: str
    interface: str
    key: str  # "-" when the finding is about the interface itself
    what: str
    drift: bool = True  # False: listed for the reader, but a reconcile would not change it

    def line(self) -> str:
        return f"{self.domain} {self.interface} {self.key} {self.what}"


def findings(dom: DomainLinks, survey: Survey) -> list[Finding]:
    """One finding per part of the plan, in the order the reconcile carries them out."""
    todo = survey.plan
    out = [
        Finding(dom.domain, dom.wg, key, "stale: no handshake; the worker removes it (not drift)", drift=False)
        for key in todo.remove
    ]
    out += [Finding(dom.domain, dom.wg, key, "peer missing") for key in todo.add_peers]
    for key in todo.fix_peers:
        have = ",".join(survey.peers[key].allowed_ips) or "none"
        out.append(Finding(dom.domain, dom.wg, key, f"allowed-ips {have}, want {lladdr(dom, key)}/128"))
    for key in todo.add_links:
        for part in todo.links_missing[key]:
            if part == "route":
                out.append(Finding(dom.domain, dom.wg, key, f"route {lladdr(dom, key)}/128 missing"))
            else:
                out.append(Finding(dom.domain, dom.vx, key, f"FDB entry dst {lladdr(dom, key)} missing"))
    if survey.vx_index is None:
        out.append(Finding(dom.domain, dom.vx, "-", "interface missing: no FDB entries (not drift)", drift=False))
    return out


def survey_all(reconciler: Reconciler, domains: Iterable[DomainLinks]) -> tuple[list[Finding], list[str]]:
    """Findings of every domain, and the domains whose kernel state could not be read."""
    found: list[Finding] = []
    errors: list[str] = []
    for dom in domains:
        waiting = len(reconciler.journal.keys(dom.domain))
        try:
            found += findings(dom, reconciler.survey(dom))
        except InterfaceMissing as exc:
            what = f"interface missing ({exc}): {waiting} journal keys wait for it (not drift)"
            found.append(Finding(dom.domain, dom.wg, "-", what, drift=False))
        except KernelError as exc:
            errors.append(f"domain {dom.domain}: cannot read the kernel state: {exc}")
    return found, errors


def reconciler_for(cfg: Config, selector: BackendSelector, links: Links, clock: Callable[[], float]) -> Reconciler:
    """The daemon's reconciler over a read-only journal (nothing here is ever carried out)."""
    journal = Journal(cfg.worker.journal, read_only=True)
    metrics = WorkerMetrics()  # never served: the reconciler records into it
    changes = KernelChanges(selector, links, journal, metrics)
    return Reconciler.for_config(cfg.worker, changes, metrics, clock)


def report(
    cfg: Config,
    selector: BackendSelector | None = None,
    links: Links | None = None,
    clock: Callable[[], float] = time.time,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Print the findings (stdout) and a summary (stderr); return the exit code."""
    own_links = links is None
    links = Links() if links is None else links
    try:
        reconciler = reconciler_for(cfg, selector or BackendSelector(cfg.worker.backend), links, clock)
        found, errors = survey_all(reconciler, domain_links(cfg))
    except JournalError as exc:
        print(exc, file=err)
        return EXIT_ERROR
    finally:
        if own_links:
            links.close()
    for finding in found:
        print(finding.line(), file=out)
    for error in errors:
        print(error, file=err)
    drifted = [f for f in found if f.drift]
    if errors:
        return EXIT_ERROR
    if drifted:
        domains = len({f.domain for f in drifted})
        print(
            f"drift: {len(drifted)} findings in {domains} domains; a reconcile puts them back "
            "(systemctl reload wgmesh-worker)",
            file=err,
        )
        return EXIT_DRIFT
    print(f"in sync: {len(cfg.domains)} domains as the journal says", file=err)
    return EXIT_IN_SYNC
