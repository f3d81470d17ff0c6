"""Which member of an HA pair is active, for the worker: one small file `wgmesh-ha` writes.

"active" after a promotion, "standby" after a demotion; the file's mtime says when. A standby
sees no handshakes, so to it every node looks idle for hours: the worker (with
`worker.ha_state_file`) runs stale-peer cleanup only while active, and counts every peer's
grace period from the promotion at the earliest (docs/ha.md).
"""

from __future__ import annotations

import os

from wgmesh.fsutil import write_atomic

DEFAULT_PATH = "/run/wgmesh/ha-state"
ACTIVE = "active"
STANDBY = "standby"


def write(path: str, state: str) -> None:
    # 0644: wgmesh-ha runs as root, a kernel-backend worker as its own user; an unreadable
    # file would count as standby for ever. Nothing in it is secret.
    write_atomic(path, f"{state}\n".encode(), mode=0o644)


def active_since(path: str) -> float | None:
    """When this member became active (seconds since the epoch), or None while it is standby.
    A missing or unreadable file counts as standby: no peer is dropped while unsure."""
    try:
        with open(path, encoding="utf-8") as fh:
            content = fh.read(64).strip()
            mtime = os.fstat(fh.fileno()).st_mtime
    except OSError:
        return None
    return mtime if content == ACTIVE else None
