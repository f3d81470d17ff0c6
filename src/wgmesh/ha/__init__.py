"""HA gateway pairs (keepalived): what a member does when it becomes active (docs/ha.md).

__main__.py   wgmesh-ha: promote / demote / route, run by keepalived's notify scripts
promote.py    promotion carried out per domain, in the order the nodes need
plan.py       pure decisions: which endpoints to apply, which peers to trigger, the undo
endpoints.py  the file of endpoints learnt from the partner, applied only on promotion
route.py      the source route: WireGuard's packets leave from the virtual address
"""
