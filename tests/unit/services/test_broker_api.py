"""The broker's HTTP API in-process (aiohttp test server), MQTT replaced by FakeTransport.

What the FFMUC Gluon client sees: status codes, JSON shapes, Content-Type
independence, and that bad input is a 4xx JSON error, never a 5xx.
"""

from __future__ import annotations

import base64
import json

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from wgmesh.broker.api import REGISTRY, make_app
from wgmesh.broker.registry import Registry

V1 = "/api/v1/wg/key/exchange"
V2 = "/api/v2/wg/key/exchange"
GW_KEY = "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg="


def gateway_online(registry: Registry, worker: str, domain: str, peers: int, data: bool = True) -> None:
    registry.handle(f"wireguard-worker/{worker}/status", b"1")
    registry.handle(f"wireguard-metrics/{domain}/{worker}/connected_peers", str(peers).encode())
    if data:
        payload = {
            "ExternalAddress": f"{worker}.example.net",
            "Port": 40000,
            "PublicKey": GW_KEY,
            "LinkAddress": "fe80::1",
        }
        registry.handle(f"wireguard-worker/{worker}/{domain}/data", json.dumps(payload).encode())


def arriving_from(address: str):
    """Middleware standing in for a client at `address`: every test client is on loopback."""

    @web.middleware
    async def peer(request, handler):
        return await handler(request.clone(remote=address))

    return peer


@pytest_asyncio.fixture
async def api(config_factory, transport):
    """Returns start(cfg=None, peer=None) -> (client, app); servers are closed at teardown."""
    clients = []

    async def start(cfg=None, peer=None):
        app = make_app(cfg or config_factory(), transport)
        if peer is not None:
            app.middlewares.insert(0, arriving_from(peer))
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client, app

    yield start
    for client in clients:
        await client.close()


def body(domain, key):
    return json.dumps({"domain": domain, "public_key": key})


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "content_type",
    [None, "application/x-www-form-urlencoded", "text/plain", "application/json", "application/octet-stream"],
)
async def test_v1_accepts_json_whatever_the_content_type(api, transport, keys, content_type):
    client, _app = await api()
    headers = {"Content-Type": content_type} if content_type else {}
    data = body("ffmuc_welt", keys[0]).encode()
    resp = await client.post(V1, data=data, headers=headers, skip_auto_headers=["Content-Type"])
    assert resp.status == 200
    assert await resp.json() == {"Message": "OK"}
    assert transport.published == [("wireguard/ffmuc_welt/all", keys[0], 1)]


@pytest.mark.asyncio
async def test_v2_returns_the_least_loaded_gateway(api, transport, keys):
    client, app = await api()
    gateway_online(app[REGISTRY], "gw1", "ffmuc_welt", 20)
    gateway_online(app[REGISTRY], "gw2", "ffmuc_welt", 19)
    resp = await client.post(V2, data=body("ffmuc_welt", keys[0]))
    assert resp.status == 200
    assert await resp.json() == {
        "Endpoint": {"Address": "gw2.example.net", "Port": "40000", "AllowedIPs": ["fe80::1"], "PublicKey": GW_KEY}
    }
    assert transport.published == [("wireguard/ffmuc_welt/all", keys[0], 1)]


@pytest.mark.asyncio
async def test_v2_no_gateway_is_400_and_missing_data_is_500(api, transport, keys):
    client, app = await api()
    resp = await client.post(V2, data=body("ffmuc_welt", keys[0]))
    assert resp.status == 400
    assert (await resp.json())["error"]["message"] == "no gateway online for domain ffmuc_welt"
    gateway_online(app[REGISTRY], "gw1", "ffmuc_welt", 1, data=False)
    resp = await client.post(V2, data=body("ffmuc_welt", keys[0]))
    assert resp.status == 500
    assert "gw1 has not published its endpoint data" in (await resp.json())["error"]["message"]
    assert len(transport.published) == 2  # the key still reached the workers both times


@pytest.mark.asyncio
async def test_v2_while_state_loads_is_503_not_400(api, transport, keys):
    client, app = await api()
    transport.synced = False  # connected, retained worker state not yet complete
    resp = await client.post(V2, data=body("ffmuc_welt", keys[0]))
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert "still loading" in (await resp.json())["error"]["message"]
    resp = await client.get("/health")
    assert resp.status == 503
    assert (await resp.json())["status"] == "starting"
    gateway_online(app[REGISTRY], "gw1", "ffmuc_welt", 1)  # a worker already known: serve it
    assert (await client.post(V2, data=body("ffmuc_welt", keys[0]))).status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b"", 400, "request body is empty"),
        (b"nonsense", 400, "request body is not valid JSON"),
        (b"\xff\xfe", 400, "request body is not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"domain": "ffmuc_welt"}', 400, "public_key is missing"),
        (b'{"public_key": "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="}', 400, "domain is missing"),
        (b'{"domain": "ffmuc_welt", "public_key": 5}', 400, "public_key 'int' is not a WireGuard public key"),
        (
            b'{"domain": "ffmuc_welt", "public_key": "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8=\\n"}',
            400,
            "is not a WireGuard public key",
        ),
        (
            b'{"domain": "ffmuc_welt", "public_key": "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx9="}',
            400,
            "is not a WireGuard public key",
        ),
        (
            b'{"domain": "ffmuc_nowhere", "public_key": "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="}',
            400,
            "domain 'ffmuc_nowhere' is not served here",
        ),
        (
            b'{"domain": ["ffmuc_welt"], "public_key": "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="}',
            400,
            "domain 'list' is not served here",
        ),
    ],
)
@pytest.mark.parametrize("path", [V1, V2])
async def test_bad_input_is_a_4xx_json_error(api, transport, path, raw, status, message):
    client, _app = await api()
    resp = await client.post(path, data=raw)
    assert resp.status == status
    assert resp.content_type == "application/json"
    assert message in (await resp.json())["error"]["message"]
    assert transport.published == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "key", ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEVc="]
)
@pytest.mark.parametrize("path", [V1, V2])
async def test_low_order_key_is_400_and_never_published(api, transport, path, key):
    # all-zero and an order-8 point: every shared secret with them is zero
    client, _app = await api()
    resp = await client.post(path, data=body("ffmuc_welt", key))
    assert resp.status == 400
    assert "low-order" in (await resp.json())["error"]["message"]
    assert transport.published == []


@pytest.mark.asyncio
async def test_huge_body_413_by_length_and_while_streaming(api, transport):
    client, _app = await api()
    resp = await client.post(V1, data=b"{" + b" " * 5000 + b"}")
    assert resp.status == 413
    assert "exceeds the limit of 1024 bytes" in (await resp.json())["error"]["message"]

    async def chunks():  # no Content-Length: the limit applies while reading
        for _chunk in range(10):
            yield b" " * 500

    resp = await client.post(V1, data=chunks())
    assert resp.status == 413
    assert (await resp.json())["error"]["message"]
    assert transport.published == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", V1, 405, "method GET not allowed for /api/v1/wg/key/exchange"),
        ("PUT", V2, 405, "method PUT not allowed"),
        ("POST", "/api/v3/wg/key/exchange", 404, "no such endpoint: POST /api/v3/wg/key/exchange"),
        ("GET", "/", 404, "no such endpoint"),
    ],
)
async def test_unknown_routes_and_methods_are_json(api, method, path, status, message):
    client, _app = await api()
    resp = await client.request(method, path)
    assert resp.status == status
    assert message in (await resp.json())["error"]["message"]


@pytest.mark.asyncio
async def test_mqtt_failure_is_503_never_200(api, transport, keys):
    client, _app = await api()
    transport.fail_with = "MQTT broker did not acknowledge within 2s"
    for path in (V1, V2):
        resp = await client.post(path, data=body("ffmuc_welt", keys[0]))
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        assert "did not acknowledge" in (await resp.json())["error"]["message"]


@pytest.mark.asyncio
async def test_blocklist_allowlist_are_403(api, config_factory, transport, keys):
    cfg = config_factory(
        broker={
            "blocklist": {"ffmuc_welt": [keys[0]]},
            "allowlist": {"ffmuc_uml": [keys[1]]},
            "rate_limit": {"per_client_per_minute": 0},
        }
    )
    client, _app = await api(cfg)
    resp = await client.post(V1, data=body("ffmuc_welt", keys[0]))
    assert resp.status == 403
    assert "blocked" in (await resp.json())["error"]["message"]
    resp = await client.post(V1, data=body("ffmuc_uml", keys[0]))
    assert resp.status == 403
    assert (await client.post(V1, data=body("ffmuc_uml", keys[1]))).status == 200
    assert (await client.post(V1, data=body("ffmuc_welt", keys[1]))).status == 200
    assert [p[1] for p in transport.published] == [keys[1], keys[1]]


@pytest.mark.asyncio
async def test_rate_limit_429_with_retry_after(api, config_factory, transport, keys):
    cfg = config_factory(broker={"rate_limit": {"per_client_per_minute": 2, "burst": 3}})
    client, _app = await api(cfg, peer="203.0.113.5")
    statuses = [(await client.post(V1, data=body("ffmuc_welt", keys[0]))).status for _request in range(3)]
    assert statuses == [200, 200, 200]
    resp = await client.post(V1, data=body("ffmuc_welt", keys[0]))
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 30
    assert "too many requests" in (await resp.json())["error"]["message"]
    # A spoofed X-Forwarded-For does not buy a fresh bucket (no trusted proxy configured).
    resp = await client.post(V1, data=body("ffmuc_welt", keys[0]), headers={"X-Forwarded-For": "198.51.100.1"})
    assert resp.status == 429
    assert len(transport.published) == 3


@pytest.mark.asyncio
async def test_rate_limit_keys_on_forwarded_for_behind_trusted_proxy(api, config_factory, keys):
    cfg = config_factory(
        broker={"rate_limit": {"per_client_per_minute": 1, "burst": 1}, "trusted_proxies": ["127.0.0.0/8", "::1"]}
    )
    client, _app = await api(cfg)
    for node in ("198.51.100.1", "198.51.100.2"):
        resp = await client.post(V1, data=body("ffmuc_welt", keys[0]), headers={"X-Forwarded-For": node})
        assert resp.status == 200
    resp = await client.post(V1, data=body("ffmuc_welt", keys[0]), headers={"X-Forwarded-For": "198.51.100.1"})
    assert resp.status == 429


@pytest.mark.asyncio
async def test_untrusted_loopback_peer_is_not_rate_limited_as_one_client(api, config_factory, transport, caplog):
    # wgkex's config behind nginx on the same host: every node arrives from
    # 127.0.0.1. One bucket for all of them would throttle the whole mesh.
    cfg = config_factory(broker={"rate_limit": {"per_client_per_minute": 30, "burst": 10}})
    client, _app = await api(cfg)
    statuses = []
    for node in range(40):
        headers = {"X-Forwarded-For": f"198.51.100.{node}"}
        key = base64.b64encode(bytes([node + 1]) * 32).decode()
        statuses.append((await client.post(V1, data=body("ffmuc_welt", key), headers=headers)).status)
    assert statuses == [200] * 40
    warnings = [r.getMessage() for r in caplog.records if "broker.trusted_proxies" in r.getMessage()]
    assert len(warnings) == 1, warnings  # said once, not per request
    assert "127.0.0.1" in warnings[0]


@pytest.mark.asyncio
async def test_trusted_loopback_proxy_limits_per_node(api, config_factory, keys):
    cfg = config_factory(
        broker={"rate_limit": {"per_client_per_minute": 1, "burst": 1}, "trusted_proxies": ["127.0.0.1"]}
    )
    client, _app = await api(cfg)
    headers = {"X-Forwarded-For": "198.51.100.1"}
    assert (await client.post(V1, data=body("ffmuc_welt", keys[0]), headers=headers)).status == 200
    assert (await client.post(V1, data=body("ffmuc_welt", keys[0]), headers=headers)).status == 429


@pytest.mark.asyncio
async def test_health_and_metrics(api, transport, keys):
    client, app = await api()
    resp = await client.get("/health")
    assert (resp.status, await resp.json()) == (200, {"status": "ok", "mqtt": "connected"})
    await client.post(V1, data=body("ffmuc_welt", keys[0]))
    await client.post(V1, data=b"x")
    gateway_online(app[REGISTRY], "gw1", "ffmuc_welt", 7)
    text = await (await client.get("/metrics")).text()
    assert 'wgmesh_broker_requests_total{endpoint="v1",status="200"} 1.0' in text
    assert 'wgmesh_broker_requests_total{endpoint="v1",status="400"} 1.0' in text
    assert 'wgmesh_broker_worker_connected_peers{domain="ffmuc_welt",worker="gw1"} 7.0' in text
    assert "wgmesh_broker_workers_online 1.0" in text
    assert "wgmesh_broker_publish_seconds_count 1.0" in text
    transport.connected = False
    transport.last_error = "MQTT broker refused the connection: not authorised"
    resp = await client.get("/health")
    assert resp.status == 503
    assert (await resp.json())["error"]["message"] == transport.last_error
