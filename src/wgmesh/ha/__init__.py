"""HA gateway pairs (keepalived): what a member does when it becomes active (docs/ha.md).

__main__.py   wgmesh-ha: promote / demote / fifo / route, run by keepalived
fifo.py       keepalived's notify FIFO, followed by one long-running process
promote.py    promotion carried out per domain, in the order the nodes need
plan.py       pure decisions: sessions to drop, endpoints to apply, peers to trigger, the undo
endpoints.py  the file of endpoints learnt from the partner, applied only on promotion
sync.py       the sync channel's messages between the members (the worker sends and follows them)
route.py      the source route: WireGuard's packets leave from the virtual address
state.py      "active" / "standby" in a file, for the worker's stale-peer cleanup
"""
