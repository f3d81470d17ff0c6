"""The key-exchange broker: Gluon nodes POST their key, workers get it over MQTT.

Layers, each readable alone: `api` (HTTP, aiohttp), `abuse` (rate limit,
block/allow lists, client address), `registry` (what workers report, gateway
choice), `transport` (paho-mqtt bridged into asyncio), `metrics`
(Prometheus), `server` (wiring and lifecycle), `__main__` (CLI).
"""
