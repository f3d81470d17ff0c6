"""The gateway worker: applies node keys from MQTT as WireGuard peers, routes and VXLAN FDB entries.

Layers, each readable alone (docs/worker.md, "Code layout"):
  daemon.py     the apply loop, composing the parts below
  session.py    the MQTT session (paho's thread: validate, queue, subscribe, acknowledge)
  committer.py  the thread that writes the journal, then acknowledges the keys it holds
  changes.py    kernel add/remove per domain: peers, then routes and FDB entries
  reconciler.py make the kernel match the journal, per domain
  drift.py      --drift: what a reconcile would change now, read-only (its own process)
  report.py     what the broker reads: data and connected-peer counts
  harole.py     an HA member's role (active/standby), from the file wgmesh-ha writes
  hasync.py     an HA pair's sync channel: send (active) or follow (standby) keys and endpoints
  reconcile.py  pure decisions: what to add, what is stale
  journal.py    the desired peers per domain, kept in a small local file
  domains.py    the domains served and their interface names
  selector.py   the choice between kernel and userspace WireGuard per interface
  backend.py    the WireGuard backend interface
  kernel.py     kernel WireGuard over generic netlink (pyroute2), with consistent dumps
  uapi.py       userspace WireGuard (wireguard-go) over its UAPI socket
  links.py      routes and VXLAN FDB entries over rtnetlink (pyroute2 IPRoute)
  rtnl_bulk.py  bulk rtnetlink for those two tables
  errors.py     KernelError, the one family of kernel-side failures
  metrics.py    Prometheus metrics and /health
"""
