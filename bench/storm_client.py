"""Open-loop key storm for bench/key_to_peer_bench.py: COUNT v2 POSTs at RATE per second.

Runs as its own process so its CPU and GIL do not slow the route watchers and the
MQTT relays of the benchmark process. Each POST is sent at its scheduled moment
(t0 + i / RATE) whatever the earlier ones are doing, on a new connection with
`Connection: close`, like a Gluon node's busybox wget. Prints one JSON object:
{"sent": {key: perf_counter at send}, "answer_ms": [...], "statuses": {code: n},
"late_ms": p99 of how far sends slipped behind their schedule}. perf_counter is
CLOCK_MONOTONIC on Linux, so the parent compares it with its own clock.

    python bench/storm_client.py URL DOMAIN RATE COUNT  (COUNT + 5 keys on stdin, one a line)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

WARM_UP = 5  # sequential POSTs before the storm, not reported (their keys are spent)


async def storm(url: str, domain: str, rate: float, keys: list[str]) -> dict:
    sent: dict[str, float] = {}
    answers: list[float] = []
    late: list[float] = []
    statuses: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(key: str) -> None:
            body = json.dumps({"domain": domain, "public_key": key})
            sent[key] = t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = str(resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            answers.append((time.perf_counter() - t0) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

        for dummy in range(WARM_UP):  # the client's own first-request costs stay out of the figures
            await post(keys.pop())
        for measured in (sent, answers, statuses):
            measured.clear()
        tasks = []
        start = time.perf_counter()
        for i, key in enumerate(keys):
            due = start + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            late.append((time.perf_counter() - due) * 1000)
            tasks.append(asyncio.create_task(post(key)))
        await asyncio.gather(*tasks)
    late.sort()
    return {
        "sent": sent,
        "answer_ms": answers,
        "statuses": statuses,
        "late_ms": late[min(len(late) - 1, int(0.99 * len(late)))] if late else 0.0,
    }


def main() -> None:
    url, domain, rate, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    keys = [line.strip() for line in sys.stdin if line.strip()][: count + WARM_UP]
    print(json.dumps(asyncio.run(storm(url, domain, rate, keys))))


if __name__ == "__main__":
    main()
