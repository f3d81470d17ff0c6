"""The worker's side of an HA pair's sync channel (docs/ha.md, "The sync channel"); apply thread only.

Active: per domain, the keys the member holds and the endpoints of its peers with a recent
handshake go out retained (wgmesh.ha.sync), when they changed and at most every
HA_SYNC_INTERVAL_S, and again every REFRESH_S so a quiet pair's message stays recent.

Standby: what the partner sends is followed, never the member's own view (it sees no
handshakes): the endpoints go to the learnt-endpoints file and nowhere else (`wgmesh-ha
promote` applies them), every key it lacks is added, and a key the partner dropped is removed
here too. Once it holds every key of its partner in every domain it writes the synced marker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from wgmesh import protocol
from wgmesh.fsutil import write_atomic
from wgmesh.ha import endpoints, sync
from wgmesh.worker.backend import BackendError
from wgmesh.worker.changes import KernelChanges, lladdr
from wgmesh.worker.domains import DomainLinks

log = logging.getLogger(__name__)

HA_SYNC_INTERVAL_S = 2.0  # how often the active member looks for a change to send
REFRESH_S = 60.0  # an unchanged message is sent again this often
# A key the standby has held since this long before the partner's message, and the partner
# does not hold, was dropped by the partner while this member did not hear it (it was down).
# Younger ones may still be on their way to the partner (both members get keys on their own).
REMOVE_MARGIN_S = 600.0


class HaSync:
    def __init__(
        self,
        identity: str,
        client_id: str,
        domains: Mapping[str, DomainLinks],
        changes: KernelChanges,
        static: frozenset[str],
        endpoints_file: str,
        synced_file: str,
        publish: Callable[..., None],
        clock: Callable[[], float],
    ):
        self.identity = identity
        self.client_id = client_id
        self.domains = domains
        self.changes = changes
        self.journal = changes.journal
        self.static = static
        self.endpoints_file = endpoints_file
        self.synced_file = synced_file
        self.publish = publish
        self.clock = clock
        self.sent: dict[str, tuple[object, float]] = {}  # domain -> (content, when sent)
        self.partner: dict[str, sync.PartnerPeers] = {}  # domain -> the last message followed
        self.learnt: dict[str, dict[str, str]] = {}
        self._set_synced(False)  # not synced until the partner was heard by this process

    # --- active -----------------------------------------------------------------
    def send_changes(self) -> None:
        now = self.clock()
        for dom in self.domains.values():
            try:
                peers = self.changes.selector.for_interface(dom.wg).device(dom.wg).peers
            except BackendError as exc:
                self.changes.selector.forget(dom.wg)
                log.warning("HA sync: domain %s: %s; nothing sent", dom.domain, exc)
                continue
            keys = sorted(self.journal.keys(dom.domain))
            recent = now - protocol.HANDSHAKE_ACTIVE_S
            learnt = {k: p.endpoint for k, p in peers.items() if p.endpoint and p.last_handshake >= recent}
            content = (keys, learnt)
            last = self.sent.get(dom.domain)
            if last is not None and last[0] == content and now - last[1] < REFRESH_S:
                continue
            topic = protocol.topic_ha_peers(self.identity, self.client_id, dom.domain)
            self.publish(topic, sync.encode(keys, learnt, now), qos=protocol.QOS_HA_PEERS, retain=True)
            self.sent[dom.domain] = (content, now)

    def forget_sent(self) -> None:
        """After a role change: the next check sends everything."""
        self.sent.clear()

    # --- standby ----------------------------------------------------------------
    def follow(self, msg: sync.PartnerPeers) -> None:
        last = self.partner.get(msg.domain)
        if last is not None and msg.time < last.time:
            log.info("HA sync: domain %s: an older message from %s ignored", msg.domain, msg.client_id)
            return
        dom = self.domains[msg.domain]
        self._learn(msg)
        held = self.journal.keys(msg.domain)
        now = self.clock()
        missing = [k for k in sorted(msg.keys) if k not in held and k not in self.static]
        for key in missing:
            self.journal.add(msg.domain, key, now)
        if missing:
            log.info("HA sync: domain %s: adding %d keys of the partner", msg.domain, len(missing))
            self.changes.add(dom, missing, now)
        dropped = set(last.keys - msg.keys) if last is not None else set()
        dropped |= {k for k, added in held.items() if k not in msg.keys and added < msg.time - REMOVE_MARGIN_S}
        dropped = {k for k in dropped if k in held and k not in self.static}
        if dropped:
            log.info("HA sync: domain %s: removing %d keys the partner dropped", msg.domain, len(dropped))
            self.changes.remove(dom, {k: (lladdr(dom, k),) for k in sorted(dropped)})
        self.partner[msg.domain] = msg
        self._set_synced(self._holds_partner_set())

    def _learn(self, msg: sync.PartnerPeers) -> None:
        if self.learnt.get(msg.domain) == msg.endpoints:
            return
        self.learnt[msg.domain] = dict(msg.endpoints)
        try:
            endpoints.save(self.endpoints_file, self.learnt)
        except OSError as exc:
            log.error("HA sync: cannot write the learnt endpoints to %s: %s", self.endpoints_file, exc)

    def _holds_partner_set(self) -> bool:
        for dom in self.domains.values():
            msg = self.partner.get(dom.domain)
            if msg is None:
                return False
            try:
                peers = self.changes.selector.for_interface(dom.wg).device(dom.wg).peers
            except BackendError:
                self.changes.selector.forget(dom.wg)
                return False
            if any(k not in peers for k in msg.keys if k not in self.static):
                return False
        return True

    def _set_synced(self, synced: bool) -> None:
        try:
            if synced and not os.path.exists(self.synced_file):
                log.info("HA sync: this member holds every key of its partner (%s)", self.synced_file)
                # 0644: keepalived's track script reads it, whoever runs the worker
                write_atomic(self.synced_file, f"{self.clock():.0f}\n".encode(), mode=0o644)
            elif not synced and os.path.exists(self.synced_file):
                os.unlink(self.synced_file)
        except OSError as exc:
            log.error("HA sync: cannot update the synced marker %s: %s", self.synced_file, exc)
