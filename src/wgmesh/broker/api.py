"""The HTTP API Gluon nodes talk to (wgkex-compatible, docs/architecture.md "HTTP API").

Every answer is JSON, errors as {"error": {"message": "..."}}: the middleware
turns aiohttp's own 404/405/413 and any unexpected exception into that shape,
and json_for_early_errors the few errors aiohttp answers before it runs
(unparseable requests: broker/http_guard.py).
Bad input is a 4xx that says what is wrong; 503 means "not stored, retry".
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from http import HTTPStatus

from aiohttp import web

from wgmesh import protocol
from wgmesh.broker.abuse import ClientAddress, KeyLists, RateLimiter, bucket_of, retry_after_header
from wgmesh.broker.metrics import BrokerMetrics
from wgmesh.broker.registry import Registry
from wgmesh.broker.transport import PublishError
from wgmesh.config import Config

log = logging.getLogger(__name__)

# Typed application keys (aiohttp >= 3.9).
CONFIG = web.AppKey("config", Config)
REGISTRY = web.AppKey("registry", Registry)
TRANSPORT = web.AppKey("transport", object)  # BrokerTransport or a test double with .publish/.connected
METRICS = web.AppKey("metrics", BrokerMetrics)
LIMITER = web.AppKey("limiter", RateLimiter)
KEYLISTS = web.AppKey("keylists", KeyLists)
CLIENTS = web.AppKey("clients", ClientAddress)
WARNED_LOOPBACK = web.AppKey("warned_loopback", list)  # non-empty once the loopback warning is out

ENDPOINT_NAMES = {
    protocol.PATH_V1_EXCHANGE: "v1",
    protocol.PATH_V2_EXCHANGE: "v2",
    "/health": "health",
    "/metrics": "metrics",
}
CLIENT_CLOSED = "499"  # nginx's status for "the client closed the connection before the answer"


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, close: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.close = close  # the request was not read to its end: do not reuse the connection


def error_response(status: int, message: str, headers=None) -> web.Response:
    return web.json_response({"error": {"message": message}}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    endpoint = ENDPOINT_NAMES.get(request.path, "other")
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.message, exc.headers)
        if exc.close:
            response.force_close()
    except ConnectionResetError:
        # The client went away mid-request: nobody to answer, nothing wrong here.
        log.debug("client %s closed the connection during %s %s", request.remote, request.method, request.path)
        request.app[METRICS].requests.labels(endpoint, CLIENT_CLOSED).inc()
        response = error_response(400, "request incomplete: the client closed the connection")
        response.force_close()
        return response  # aiohttp drops it quietly: the transport is gone
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        path = request.path[:200]
        if exc.status == 404:
            message = f"no such endpoint: {request.method} {path}"
        elif exc.status == 405:
            message = f"method {request.method} not allowed for {path} (allowed: {exc.headers.get('Allow', '')})"
        elif exc.text and not exc.text.startswith(f"{exc.status}:"):
            message = exc.text  # e.g. aiohttp's "Maximum request body size ... exceeded"
        else:
            message = exc.reason
        response = error_response(exc.status, message, headers)
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        response = error_response(500, "internal error")
    request.app[METRICS].requests.labels(endpoint, str(response.status)).inc()
    return response


# --- request parsing ------------------------------------------------------------


async def read_exchange_request(request: web.Request) -> tuple[str, str]:
    """(domain, public_key) from the JSON body, whatever the Content-Type claims."""
    cfg = request.app[CONFIG]
    limit = cfg.broker.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"request body of {request.content_length} bytes exceeds the limit of {limit} bytes")
    try:
        async with asyncio.timeout(cfg.broker.body_timeout):
            body = await request.read()  # the app's client_max_size stops chunked bodies at the limit
    except TimeoutError:
        raise ApiError(408, f"request body not complete within {cfg.broker.body_timeout:g}s", close=True) from None
    except web.RequestPayloadError as exc:  # e.g. Content-Encoding: gzip on a body that is not
        why = str(exc.__cause__ or exc).strip().splitlines()[-1][:120]
        raise ApiError(400, f"request body cannot be decoded: {why}", close=True) from None
    return parse_exchange_body(body, cfg)


def parse_exchange_body(body: bytes, cfg: Config) -> tuple[str, str]:
    if not body.strip():
        raise ApiError(400, 'request body is empty; expected JSON {"domain": ..., "public_key": ...}')
    try:
        data = json.loads(body)
    except RecursionError:
        raise ApiError(400, "request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer over Python's digit limit
        raise ApiError(400, f"request body is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(data, dict):
        raise ApiError(400, 'request body must be a JSON object {"domain": ..., "public_key": ...}')
    key = data.get("public_key")
    domain = data.get("domain")
    if key is None:
        raise ApiError(400, "public_key is missing")
    if isinstance(key, str) and protocol.is_low_order_key(key):
        raise ApiError(400, f"public_key {key!r} is a low-order Curve25519 point; no handshake can succeed with it")
    if not isinstance(key, str) or not protocol.is_valid_key(key):
        shown = key[:60] if isinstance(key, str) else type(key).__name__
        raise ApiError(400, f"public_key {shown!r} is not a WireGuard public key (44 characters of base64)")
    if domain is None:
        raise ApiError(400, "domain is missing")
    if not isinstance(domain, str) or domain not in cfg.domains:
        shown = domain[:60] if isinstance(domain, str) else type(domain).__name__
        raise ApiError(400, f"domain {shown!r} is not served here (known: {', '.join(cfg.domains)})")
    if not any(domain.startswith(p) for p in cfg.domain_prefixes):
        raise ApiError(400, f"domain {domain!r} does not start with a configured prefix")
    return domain, key


def check_client(request: web.Request) -> None:
    clients = request.app[CLIENTS]
    if clients.unlimited(request.remote):
        if request.app[LIMITER].enabled and not request.app[WARNED_LOOPBACK]:
            request.app[WARNED_LOOPBACK].append(request.remote)
            log.warning(
                "requests arrive from %s, a loopback address: likely every node behind a reverse proxy, so "
                "they are not rate-limited per client until the proxy is listed in broker.trusted_proxies",
                request.remote,
            )
        return
    client = clients.of(request.remote, request.headers.get("X-Forwarded-For"))
    wait = request.app[LIMITER].check(bucket_of(client))
    if wait > 0:
        raise ApiError(
            429,
            f"too many requests from {client}; retry in {retry_after_header(wait)}s",
            {"Retry-After": retry_after_header(wait)},
        )


async def publish_key(request: web.Request, domain: str, key: str) -> None:
    app = request.app
    if (why := app[KEYLISTS].refusal(domain, key)) is not None:
        raise ApiError(403, why)
    started = time.perf_counter()
    try:
        await app[TRANSPORT].publish(
            protocol.topic_key(domain), key, protocol.QOS_KEY, app[CONFIG].broker.publish_timeout
        )
    except PublishError as exc:
        app[METRICS].publish_failures.inc()
        log.warning("key for %s not stored, answering 503: %s", domain, exc)
        raise ApiError(503, f"key not stored, retry later: {exc}", {"Retry-After": "10"}) from None
    app[METRICS].publish_seconds.observe(time.perf_counter() - started)


# --- handlers ----------------------------------------------------------------------


async def exchange_v1(request: web.Request) -> web.Response:
    check_client(request)
    domain, key = await read_exchange_request(request)
    await publish_key(request, domain, key)
    log.info("v1: key %s for %s published", key, domain)
    return web.json_response({"Message": "OK"})


async def exchange_v2(request: web.Request) -> web.Response:
    check_client(request)
    domain, key = await read_exchange_request(request)
    await publish_key(request, domain, key)  # every worker of the domain gets the key
    registry = request.app[REGISTRY]
    worker = registry.choose(domain)
    if worker is None:
        if not request.app[TRANSPORT].synced:
            # Just (re)connected: the retained worker state is still arriving.
            raise ApiError(503, "gateway state is still loading from MQTT, retry shortly", {"Retry-After": "5"})
        raise ApiError(400, f"no gateway online for domain {domain}")
    endpoint = registry.endpoint(worker, domain)
    if endpoint is None:
        log.error("worker %s chosen for %s but its data message is missing or incomplete", worker, domain)
        raise ApiError(500, f"gateway {worker} has not published its endpoint data for domain {domain}")
    registry.note_assigned(worker, domain)
    log.info("v2: key %s for %s published, gateway %s", key, domain, worker)
    return web.json_response({"Endpoint": endpoint.as_json()})


async def json_for_early_errors(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp answers a few errors before any middleware runs, as text that echoes the request
    (an unknown Expect value: "Unknown Expect: ..."); make them our JSON shape and count them."""
    if response.status < 400 or not isinstance(response, web.Response):
        return
    if response.content_type == "application/json":
        return  # ours, counted by the middleware
    message = EARLY_ERRORS.get(response.status, HTTPStatus(response.status).phrase)
    body = json.dumps({"error": {"message": message}}).encode()
    # The headers are computed by now (aiohttp calls this hook just before sending them).
    response.body = body
    response.headers["Content-Type"] = "application/json; charset=utf-8"
    response.headers["Content-Length"] = str(len(body))
    request.app[METRICS].requests.labels(ENDPOINT_NAMES.get(request.path, "other"), str(response.status)).inc()


EARLY_ERRORS = {417: "unsupported Expect header; only 100-continue is known"}


async def health(request: web.Request) -> web.Response:
    transport = request.app[TRANSPORT]
    if transport.connected and transport.synced:
        return web.json_response({"status": "ok", "mqtt": "connected"})
    if transport.connected:
        return web.json_response(
            {"status": "starting", "mqtt": "connected", "error": {"message": "retained worker state still loading"}},
            status=503,
        )
    return web.json_response(
        {
            "status": "unavailable",
            "mqtt": "disconnected",
            "error": {"message": transport.last_error or "not connected"},
        },
        status=503,
    )


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render(request.app[REGISTRY], request.app[TRANSPORT].connected)
    return web.Response(body=body, headers={"Content-Type": content_type})


def make_app(cfg: Config, transport, registry: Registry | None = None) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=cfg.broker.max_body_bytes)
    app[CONFIG] = cfg
    app[TRANSPORT] = transport
    app[REGISTRY] = registry or Registry(cfg.weight_of)
    app[METRICS] = BrokerMetrics()
    app[LIMITER] = RateLimiter(cfg.broker.rate_limit)
    app[KEYLISTS] = KeyLists(cfg.broker)
    app[CLIENTS] = ClientAddress(cfg.broker.trusted_proxies)
    app[WARNED_LOOPBACK] = []
    app.on_response_prepare.append(json_for_early_errors)
    app.router.add_post(protocol.PATH_V1_EXCHANGE, exchange_v1)
    app.router.add_post(protocol.PATH_V2_EXCHANGE, exchange_v2)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app
