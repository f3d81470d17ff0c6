"""Tell systemd a Type=notify daemon is ready, without a dependency.

sd_notify(3) is one datagram ("READY=1") to the AF_UNIX socket named in $NOTIFY_SOCKET
("@" at the start means the abstract namespace). systemd documents this protocol as stable
and meant to be reimplemented, so no library (systemd-python needs libsystemd to build).
Without the variable (not started by systemd, or not Type=notify) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1"); True when systemd was told."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.error("cannot tell systemd %r on NOTIFY_SOCKET %s: %s", state, address, exc)
        return False
    return True
