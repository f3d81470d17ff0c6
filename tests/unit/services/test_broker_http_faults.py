"""Bad clients against the broker's real HTTP server, over raw loopback sockets.

The server is the one the daemon runs (`server.make_runner` + `start_sites`);
only MQTT is replaced by FakeTransport (mosquitto is covered by
tests/integration/services). Raw sockets, because the faults are below what an
HTTP client library lets us send: conflicting framing headers, a body cut
short, a client that never finishes its headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket

import pytest
import pytest_asyncio

from wgmesh.broker import http_guard, server
from wgmesh.broker.api import make_app

V1 = "/api/v1/wg/key/exchange"
KEY = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
GENEROUS = 30  # seconds: a bound that only a hang reaches, never a timing assertion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_asyncio.fixture
async def broker_http(config_factory, transport):
    """start(**broker section) -> port of the real HTTP server; stopped at teardown."""
    runners = []

    async def start(**broker):
        cfg = config_factory(broker={"rate_limit": {"per_client_per_minute": 0}, **broker})
        runner = await server.make_runner(make_app(cfg, transport))
        runners.append(runner)
        port = free_port()
        await server.start_sites(runner, "127.0.0.1", port)
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


async def exchange_raw(port: int, data: bytes, shut_write: bool = False) -> bytes:
    """Send bytes, read until the server closes; b"" when it closed without an answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if shut_write:
            writer.write_eof()
        try:
            return await asyncio.wait_for(reader.read(), GENEROUS)
        except ConnectionResetError:
            return b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def post(body: bytes, extra: str = "") -> bytes:
    head = f"POST {V1} HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n{extra}"
    if "Content-Length" not in extra and "Transfer-Encoding" not in extra:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def parse(raw: bytes) -> tuple[int, str, dict]:
    head, _sep, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    media_type = headers.get("Content-Type", "").split(";")[0]
    return int(lines[0].split()[1]), media_type, json.loads(body) if body else {}


async def requests_by_status(port: int) -> dict[str, float]:
    raw = await exchange_raw(port, b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
    counts = {}
    for line in raw.decode().splitlines():
        if line.startswith("wgmesh_broker_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            status = labels.split('status="', 1)[1].split('"', 1)[0]
            counts[status] = counts.get(status, 0) + float(value)
    return counts


def assert_logged_quietly(caplog) -> None:
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "max_body", "message"),
    [
        (b"[" * 1000, 1024, "nested too deeply"),
        (b'{"domain": ' + b"1" * 5000 + b"}", 8192, "not valid JSON"),  # over Python's int-digit limit
    ],
    ids=["deep-nesting", "huge-integer"],
)
async def test_pathological_json_is_a_400_not_a_traceback(broker_http, transport, caplog, body, max_body, message):
    caplog.set_level(logging.DEBUG)
    port = await broker_http(max_body_bytes=max_body)
    status, ctype, data = parse(await exchange_raw(port, post(body)))
    assert (status, ctype) == (400, "application/json")
    assert message in data["error"]["message"]
    assert transport.published == []
    assert_logged_quietly(caplog)
    assert (await requests_by_status(port)).get("500") is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "extra",
    [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\nX-Echo: SECRET-MARKER\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\nX-Echo: SECRET-MARKER\r\n",
        "Content-Length: -1\r\nX-Echo: SECRET-MARKER\r\n",
    ],
    ids=["te-and-cl", "two-cl", "negative-cl"],
)
async def test_framing_errors_are_json_4xx_that_echo_nothing(broker_http, caplog, extra):
    caplog.set_level(logging.DEBUG)
    port = await broker_http()
    raw = await exchange_raw(port, post(b"hello", extra))
    assert b"SECRET-MARKER" not in raw
    status, ctype, data = parse(raw)
    assert 400 <= status < 500
    assert ctype == "application/json"
    assert "malformed HTTP request" in data["error"]["message"]
    assert_logged_quietly(caplog)
    assert (await requests_by_status(port)).get(str(status)) == 1


@pytest.mark.asyncio
async def test_undecodable_body_is_a_json_400(broker_http, transport, caplog):
    # Framing is fine, but the body claims an encoding it does not have.
    caplog.set_level(logging.DEBUG)
    port = await broker_http()
    status, ctype, data = parse(await exchange_raw(port, post(b"not gzip at all", "Content-Encoding: gzip\r\n")))
    assert (status, ctype) == (400, "application/json")
    assert "cannot be decoded" in data["error"]["message"]
    assert transport.published == []
    assert_logged_quietly(caplog)
    assert (await requests_by_status(port)).get("500") is None


@pytest.mark.asyncio
async def test_unknown_expect_is_a_json_417(broker_http, transport, caplog):
    caplog.set_level(logging.DEBUG)
    port = await broker_http()
    body = json.dumps({"domain": "ffmuc_welt", "public_key": KEY}).encode()
    raw = await exchange_raw(port, post(body, "Expect: bogus-SECRET-MARKER\r\n"))
    assert b"SECRET-MARKER" not in raw
    status, ctype, data = parse(raw)
    assert (status, ctype) == (417, "application/json")
    assert "Expect" in data["error"]["message"]
    assert transport.published == []
    assert_logged_quietly(caplog)
    assert (await requests_by_status(port)).get("417") == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/nowhere", "/api/v3/wg/key/exchange"])
async def test_unknown_expect_on_an_unknown_path_is_json_too(broker_http, caplog, path):
    # aiohttp answers these before any route or middleware of ours runs.
    caplog.set_level(logging.DEBUG)
    port = await broker_http()
    head = f"POST {path} HTTP/1.1\r\nHost: b\r\nExpect: bogus-SECRET-MARKER\r\nConnection: close\r\n"
    raw = await exchange_raw(port, head.encode() + b"Content-Length: 2\r\n\r\n{}")
    assert b"SECRET-MARKER" not in raw
    status, ctype, data = parse(raw)
    assert (status, ctype) == (417, "application/json")
    assert data["error"]["message"]
    assert_logged_quietly(caplog)
    assert (await requests_by_status(port)).get("417") == 1


@pytest.mark.asyncio
async def test_expect_100_continue_still_works(broker_http, transport):
    port = await broker_http()
    body = json.dumps({"domain": "ffmuc_welt", "public_key": KEY}).encode()
    raw = await exchange_raw(port, post(body, "Expect: 100-continue\r\n"))
    assert raw.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")
    assert transport.published == [("wireguard/ffmuc_welt/all", KEY, 1)]


@pytest.mark.asyncio
async def test_client_gone_mid_body_is_not_a_500(broker_http, transport, caplog):
    caplog.set_level(logging.DEBUG)
    port = await broker_http()
    # Content-Length promises 200 bytes, 10 arrive, then the client closes.
    assert await exchange_raw(port, post(b'{"domain":', "Content-Length: 200\r\n"), shut_write=True) in (b"",)
    counts = await requests_by_status(port)
    assert counts.get("500") is None, counts
    assert counts.get("499") == 1, counts  # nginx's code for "client closed the request"
    assert transport.published == []
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert_logged_quietly(caplog)


# --- slow clients ---------------------------------------------------------------------


async def open_slow(port: int, sent: bytes):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(sent)
    await writer.drain()
    return reader, writer


async def closed_by_server(reader) -> bool:
    """True once the server closed (EOF or reset), after whatever it answered first."""
    with contextlib.suppress(ConnectionResetError):
        await asyncio.wait_for(reader.read(), GENEROUS)
    return reader.at_eof() or reader.exception() is not None


async def closed_at_least(count: int, readers) -> bool:
    """Wait (boundedly) until `count` of the connections were closed by the server."""
    pending = {asyncio.ensure_future(reader.read()) for reader in readers}
    done_count, deadline = 0, asyncio.get_running_loop().time() + GENEROUS
    while done_count < count and pending:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        done_count += len(done)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return done_count >= count


SLOW = {
    "idle": b"",
    "half-headers": f"POST {V1} HTTP/1.1\r\nHost: broker\r\n".encode(),
    "half-body": post(b'{"domain": "ffmuc_welt",', "Content-Length: 200\r\n"),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", sorted(SLOW))
async def test_slow_clients_are_closed_by_the_timeouts(broker_http, caplog, kind):
    caplog.set_level(logging.DEBUG)
    port = await broker_http(header_timeout=0.5, body_timeout=0.5, keepalive_timeout=0.5)
    conns = [await open_slow(port, SLOW[kind]) for _conn in range(20)]
    try:
        closed = await asyncio.gather(*(closed_by_server(reader) for reader, _w in conns))
        assert all(closed)
    finally:
        for _r, writer in conns:
            writer.close()
    assert_logged_quietly(caplog)


@pytest.mark.asyncio
async def test_idle_keepalive_connection_is_closed(broker_http):
    port = await broker_http(keepalive_timeout=0.5)
    body = json.dumps({"domain": "ffmuc_welt", "public_key": KEY}).encode()
    request = f"POST {V1} HTTP/1.1\r\nHost: b\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    reader, writer = await open_slow(port, request)
    try:
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        assert await closed_by_server(reader)
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_a_real_post_gets_through_when_slow_clients_fill_the_limit(broker_http, transport, caplog):
    caplog.set_level(logging.DEBUG)
    # Timeouts far away: only the connection limit can make room here.
    port = await broker_http(max_connections=20, header_timeout=600, body_timeout=600, keepalive_timeout=600)
    conns = [await open_slow(port, SLOW[kind]) for kind in sorted(SLOW) for _conn in range(15)]
    try:
        body = json.dumps({"domain": "ffmuc_welt", "public_key": KEY}).encode()
        status, _ctype, data = parse(await exchange_raw(port, post(body)))
        assert (status, data) == (200, {"Message": "OK"})
        assert transport.published == [("wireguard/ffmuc_welt/all", KEY, 1)]
        # The oldest slow clients made room: at least 45 + 1 - 20 were closed.
        assert await closed_at_least(26, [reader for reader, _w in conns])
    finally:
        for _r, writer in conns:
            writer.close()
    assert_logged_quietly(caplog)


@pytest.mark.parametrize("fds", [256, 1024, 4096, 20000, 1 << 20])
def test_default_limits_leave_room_for_one_accept_burst(fds):
    burst, conns = http_guard.listen_backlog(fds), http_guard.default_max_connections(fds)
    assert conns + 3 * burst + http_guard.FD_RESERVE_MIN <= fds
    assert conns >= fds // 2 or conns == http_guard.MAX_CONNECTIONS_CAP
