"""Ceiling for bench/broker_bench.py: one aiohttp process answering v2 without MQTT.

It reads and parses the same JSON body and answers the same Endpoint JSON on
the default asyncio loop, with no key validation, no publish and no gateway
choice: what the HTTP stack alone allows on this machine.

    python bench/broker_bare_aiohttp.py --port PORT
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web

ENDPOINT = {
    "Endpoint": {
        "Address": "gw1.example.net",
        "Port": "40001",
        "AllowedIPs": ["fe80::1"],
        "PublicKey": "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg=",
    }
}


async def exchange(request: web.Request) -> web.Response:
    data = json.loads(await request.read())
    if "public_key" not in data:
        return web.json_response({"error": {"message": "public_key is missing"}}, status=400)
    return web.json_response(ENDPOINT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/api/v1/wg/key/exchange", exchange)
    app.router.add_post("/api/v2/wg/key/exchange", exchange)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
