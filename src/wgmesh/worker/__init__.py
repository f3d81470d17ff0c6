"""The gateway worker: applies node keys from MQTT as WireGuard peers, routes and VXLAN FDB entries.

Layers, each readable alone:
  errors.py    KernelError, the one family of kernel-side failures
  backend.py   the WireGuard backend interface and the choice between kernel and userspace
  kernel.py    kernel WireGuard over generic netlink (pyroute2), with consistent dumps
  uapi.py      userspace WireGuard (wireguard-go) over its UAPI socket
  links.py     routes and VXLAN FDB entries over rtnetlink (pyroute2 IPRoute)
  journal.py   the desired peers per domain, kept in a small local file
  reconcile.py pure decisions: what to add, what is stale
  daemon.py    the MQTT session and the loop that applies keys and reconciles
"""
