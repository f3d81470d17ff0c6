"""Pings from simulated nodes through their WireGuard tunnels; runs inside one node namespace.

    ha_prober.py INTERVAL  ID:DST [ID:DST ...]

Sends an ICMP echo every INTERVAL seconds from each node to its target DST on the gateway (the
route `DST dev <node's wg> src <node's tunnel address>` picks the node's tunnel), through one raw
socket, and notes the CLOCK_MONOTONIC time of every reply per node ID (the echo identifier).
Reads commands on stdin, answers one JSON line each on stdout:
  since T  -> {"ID": first reply received after T, or null, ...}
  quit
Part of bench/ha_failover.py, which starts and stops it.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import select
import socket
import struct
import sys
import time

KEEP = 20000  # replies kept per node: over half an hour at 0.1 s


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(header), ident, seq)


def main() -> int:
    interval = float(sys.argv[1])
    nodes = []
    for spec in sys.argv[2:]:
        ident, dst = spec.split(":")
        nodes.append((int(ident), dst))
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    replies: dict[int, list[float]] = {ident: [] for ident, dummy in nodes}
    seq = 0
    next_send = time.monotonic()
    print("ready", flush=True)
    while True:
        timeout = max(0.0, next_send - time.monotonic())
        ready, dummy, dummy2 = select.select([sock, sys.stdin], [], [], timeout)
        now = time.monotonic()
        if sock in ready:
            while True:
                try:
                    packet = sock.recv(2048)
                except BlockingIOError:
                    break
                ihl = (packet[0] & 0x0F) * 4
                kind, dummy, dummy2, ident = struct.unpack("!BBHH", packet[ihl : ihl + 6])
                if kind == 0 and ident in replies:
                    times = replies[ident]
                    times.append(now)
                    if len(times) > KEEP:
                        del times[: len(times) - KEEP]
        if sys.stdin in ready:
            line = sys.stdin.readline()
            if not line or line.startswith("quit"):
                return 0
            since = float(line.split()[1])
            first = {}
            for ident, times in replies.items():
                at = bisect.bisect_right(times, since)
                first[str(ident)] = times[at] if at < len(times) else None
            print(json.dumps(first), flush=True)
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            for ident, dst in nodes:
                # no route, or the tunnel refused it (no session yet): the next round tries again
                with contextlib.suppress(OSError):
                    sock.sendto(echo(ident, seq), (dst, 0))
            next_send += interval
            if next_send < now:  # fell behind (a loaded machine): do not burst to catch up
                next_send = now + interval


if __name__ == "__main__":
    sys.exit(main())
