"""Wiring and lifecycle: MQTT transport, worker registry, aiohttp runner and sites."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from wgmesh.broker.api import CONFIG, METRICS, make_app
from wgmesh.broker.http_guard import ConnectionGuard, GuardedAppRunner, GuardedSite, listen_backlog
from wgmesh.broker.keybuffer import KeyBuffer, KeyBufferError
from wgmesh.broker.registry import Registry
from wgmesh.broker.transport import BrokerTransport
from wgmesh.config import Config

log = logging.getLogger(__name__)


def listen_hosts(host: str) -> list[str]:
    # asyncio sets IPV6_V6ONLY, so "::" alone would not take IPv4; wgkex's
    # default "::" means "everything", and many nodes only have IPv4.
    return ["::", "0.0.0.0"] if host in ("::", "") else [host]  # noqa: S104 - listening everywhere is the point


async def start_sites(runner: GuardedAppRunner, host: str, port: int) -> list[GuardedSite]:
    sites = []
    for h in listen_hosts(host):
        site = GuardedSite(runner, h, port, backlog=listen_backlog())
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


def open_key_buffer(cfg: Config) -> KeyBuffer | None:
    """The configured key buffer, loaded; exit 2 with one line if its file cannot be used."""
    if cfg.broker.key_buffer is None:
        return None
    buffer = KeyBuffer(cfg.broker.key_buffer, cfg.broker.key_buffer_retention, cfg.broker.key_buffer_max_keys)
    try:
        buffer.load()
    except KeyBufferError as exc:
        log.error("%s (broker.key_buffer in %s)", exc, cfg.path)
        raise SystemExit(2) from None
    return buffer


async def make_runner(app: web.Application) -> GuardedAppRunner:
    """The HTTP server as the broker runs it (also what the HTTP fault tests start)."""
    cfg = app[CONFIG].broker
    guard = ConnectionGuard(cfg, app[METRICS])
    app.middlewares.insert(0, guard.middleware)  # outermost: the connection is busy from here on
    runner = GuardedAppRunner(
        app,
        guard,
        access_log=None,
        keepalive_timeout=cfg.keepalive_timeout,
        # After an early answer (413, 408) read and drop what the client still sends, briefly.
        lingering_time=min(2.0, cfg.body_timeout),
    )
    await runner.setup()
    log.info(
        "HTTP limits: %d connections (accept queue %d), headers within %gs, body within %gs, keep-alive %gs",
        guard.max_connections,
        listen_backlog(),
        cfg.header_timeout,
        cfg.body_timeout,
        cfg.keepalive_timeout,
    )
    return runner


async def serve(cfg: Config, stop: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    registry = Registry(cfg.weight_of)
    transport = BrokerTransport(cfg.mqtt, loop, registry.handle, open_key_buffer(cfg))
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
