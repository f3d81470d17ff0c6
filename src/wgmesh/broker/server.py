"""Wiring and lifecycle: MQTT transport, worker registry, aiohttp runner and sites."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from wgmesh.broker.api import make_app
from wgmesh.broker.registry import Registry
from wgmesh.broker.transport import BrokerTransport
from wgmesh.config import Config

log = logging.getLogger(__name__)
BACKLOG = 1024  # nodes re-register in bursts when a gateway fails


def listen_hosts(host: str) -> list[str]:
    # asyncio sets IPV6_V6ONLY, so "::" alone would not take IPv4; wgkex's
    # default "::" means "everything", and many nodes only have IPv4.
    return ["::", "0.0.0.0"] if host in ("::", "") else [host]  # noqa: S104 - listening everywhere is the point


async def start_sites(runner: web.AppRunner, host: str, port: int) -> list[web.TCPSite]:
    sites = []
    for h in listen_hosts(host):
        site = web.TCPSite(runner, h, port, backlog=BACKLOG)
        try:
            await site.start()
        except OSError as exc:
            if h == "::" and host in ("::", ""):
                log.warning("cannot listen on [::]:%s (%s); IPv4 only", port, exc.strerror)
                continue
            raise
        sites.append(site)
        log.info("listening on %s", site.name)
    return sites


async def make_runner(app: web.Application) -> web.AppRunner:
    """The HTTP server as the broker runs it (also what the HTTP fault tests start)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    return runner


async def serve(cfg: Config, stop: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    registry = Registry(cfg.weight_of)
    transport = BrokerTransport(cfg.mqtt, loop, registry.handle)
    app = make_app(cfg, transport, registry)
    runner = await make_runner(app)
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    transport.start()
    try:
        await start_sites(runner, cfg.broker_listen.host, cfg.broker_listen.port)
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
        transport.stop()
