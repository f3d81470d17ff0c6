"""The worker's side of an HA pair's sync channel (docs/ha.md, "The sync channel"); apply thread only.

Active: per domain, the keys the member holds, the endpoints of its peers with a recent
handshake and the keys it dropped lately go out retained (wgmesh.ha.sync), when they changed and
at most every HA_SYNC_INTERVAL_S, and again every REFRESH_S so a quiet pair's message stays
recent. A key counts as dropped when it left the journal between two checks (stale-peer cleanup).

Standby: what the partner sends is followed, never the member's own view (it sees no
handshakes): the endpoints go to the learnt-endpoints file and nowhere else (`wgmesh-ha
promote` applies them), every key it lacks is added, and a key the partner reports dropped is
removed here too unless it was registered again since. Once it holds every key of its partner
in every domain it writes the synced marker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from wgmesh import protocol
from wgmesh.fsutil import write_atomic
from wgmesh.ha import endpoints, sync
from wgmesh.worker.changes import KernelChanges, lladdr
from wgmesh.worker.domains import DomainLinks

log = logging.getLogger(__name__)

HA_SYNC_INTERVAL_S = 2.0  # how often the active member looks for a change to send
REFRESH_S = 60.0  # an unchanged message is sent again this often
# Drops are reported this long (a standby away for less still follows them), at most this many
# (the newest): 60 bytes each in every message.
DROPPED_KEEP_S = 24 * 3600.0
DROPPED_MAX = 5000


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
        self.held: dict[str, set[str]] = {}  # domain -> the journal's keys at the last check
        self.dropped: dict[str, dict[str, float]] = {}  # domain -> key -> when it left the journal
        self.partner: dict[str, sync.PartnerPeers] = {}  # domain -> the last message followed
        # domain -> the partner's newest message, heard active or not: a member demoted after
        # the partner's (retained) set arrived must not wait for another one
        self.heard: dict[str, sync.PartnerPeers] = {}
        self.learnt: dict[str, dict[str, str]] = {}
        self._set_synced(False)  # not synced until the partner was heard by this process

    # --- active -----------------------------------------------------------------
    def send_changes(self) -> None:
        now = self.clock()
        for dom in self.domains.values():
            device = self.changes.device(dom, "HA sync: nothing sent")
            if device is None:
                continue
            peers = device.peers
            keys = sorted(self.journal.keys(dom.domain))
            dropped = self._note_drops(dom.domain, set(keys), now)
            recent = now - protocol.HANDSHAKE_ACTIVE_S
            learnt = {k: p.endpoint for k, p in peers.items() if p.endpoint and p.last_handshake >= recent}
            content = (keys, learnt, dropped)
            last = self.sent.get(dom.domain)
            if last is not None and last[0] == content and now - last[1] < REFRESH_S:
                continue
            topic = protocol.topic_ha_peers(self.identity, self.client_id, dom.domain)
            self.publish(topic, sync.encode(keys, learnt, now, dropped), qos=protocol.QOS_HA_PEERS, retain=True)
            self.sent[dom.domain] = (content, now)

    def _note_drops(self, domain: str, keys: set[str], now: float) -> dict[str, float]:
        dropped = self.dropped.setdefault(domain, {})
        for key in self.held.get(domain, keys) - keys:
            dropped[key] = now
        for key in keys & dropped.keys():  # registered again
            del dropped[key]
        recent = sorted(((t, k) for k, t in dropped.items() if t >= now - DROPPED_KEEP_S), reverse=True)
        self.dropped[domain] = dropped = {k: t for t, k in recent[:DROPPED_MAX]}
        self.held[domain] = keys
        return dict(dropped)

    def forget_sent(self) -> None:
        """After a role change: the next check sends everything, and a drop counts only from then
        (keys removed while standby were the partner's drops, reported by the partner)."""
        self.sent.clear()
        self.held.clear()

    # --- standby ----------------------------------------------------------------
    def hear(self, msgs: list[sync.PartnerPeers]) -> None:
        """Keep the partner's newest message per domain (each is its whole set)."""
        for msg in msgs:
            last = self.heard.get(msg.domain)
            if last is None or msg.time >= last.time:
                self.heard[msg.domain] = msg

    def follow_heard(self) -> None:
        for msg in list(self.heard.values()):
            self.follow(msg)

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
        # a key added here after the partner dropped it was registered again: it stays
        dropped = {k for k, at in msg.dropped.items() if k in held and held[k] < at and k not in msg.keys}
        dropped -= self.static
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
            device = self.changes.device(dom, "HA sync: not synced while it cannot be read")
            if device is None or any(k not in device.peers for k in msg.keys if k not in self.static):
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
