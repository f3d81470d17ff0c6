"""The worker's one family of kernel-side errors (docs/worker.md, "Errors").

WireGuard (backend.py and its kernel/uapi implementations), rtnetlink (links.py) and the bulk
netlink path (rtnl_bulk.py) each raise a subclass, so the daemon handles them all in one place
per domain: log, count in /metrics, retry at the next reconcile.
"""

from __future__ import annotations


class KernelError(Exception):
    """A change or a read in the kernel (or wireguard-go) failed; the message names what."""
