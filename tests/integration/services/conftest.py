"""Fixtures for the daemon integration tests: real mosquitto, broker and gateways, stopped at teardown.

Thin wrappers around tests.support (which bench/ shares): `mosquitto` starts mosquitto 2.x on
127.0.0.1 at a free port with its own config, persistence directory and log under tmp_path;
`mosquitto_factory` builds variants (password file, ACL, TLS listener). Both return a
`Mosquitto` that can `stop()`, `start()` and `restart()` on the same port with the same
persistence. `broker_factory` starts the real broker process against such a mosquitto;
`gateways` makes namespaces with wireguard-go and VXLAN for workers; `publisher` is a QoS 1
MQTT client on the host. A missing tool or privilege skips the test with its reason.
"""

from __future__ import annotations

import contextlib
import secrets

import pytest

from tests.support.broker import BrokerProcess
from tests.support.gateway import PREFIX, Gateway, Publisher, require_tools
from tests.support.mosquitto import Mosquitto
from tests.support.net import free_port
from tests.support.procs import Unavailable


@contextlib.contextmanager
def skip_if_unavailable():
    try:
        yield
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Start mosquitto variants: factory(users={"u": "pw"}, tls={...}, acl="user u\\ntopic ...")."""
    started: list[Mosquitto] = []

    def factory(
        users: dict[str, str] | None = None, tls: dict[str, str] | None = None, acl: str | None = None
    ) -> Mosquitto:
        workdir = tmp_path / f"mosquitto{len(started)}"
        workdir.mkdir()
        mq = Mosquitto(workdir=workdir, port=free_port(), users=users or {}, tls=tls, acl=acl)
        started.append(mq)
        with skip_if_unavailable():
            mq.start()
        return mq

    yield factory
    for mq in started:
        mq.stop()


@pytest.fixture
def mosquitto(mosquitto_factory) -> Mosquitto:
    """A plain anonymous mosquitto with persistence, on 127.0.0.1:<free port>."""
    return mosquitto_factory()


@pytest.fixture
def broker_factory(tmp_path):
    """factory(mosquitto, **config sections) -> started BrokerProcess; stopped at teardown."""
    started: list[BrokerProcess] = []

    def factory(mq: Mosquitto, **overrides) -> BrokerProcess:
        config = {
            "domains": ["ffmuc_welt", "ffmuc_uml"],
            "domain_prefixes": ["ffmuc_"],
            "mqtt": {"broker_url": mq.host, "broker_port": mq.port, "keepalive": 5},
            "broker": {"rate_limit": {"per_client_per_minute": 0}, "publish_timeout": 2.0},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        port = free_port()
        config["broker_listen"] = {"host": "127.0.0.1", "port": port}
        workdir = tmp_path / f"broker{len(started)}"
        workdir.mkdir()
        broker = BrokerProcess(workdir=workdir, config=config, port=port)
        started.append(broker)
        broker.start()
        return broker

    yield factory
    for broker in started:
        broker.stop()


@pytest.fixture
def gateways(tmp_path):
    """factory(vxlan=True) -> a fresh Gateway; all torn down at the end."""
    with skip_if_unavailable():
        require_tools()
    made: list[Gateway] = []

    def factory(vxlan: bool = True) -> Gateway:
        gw = Gateway(id=secrets.token_hex(3), workdir=tmp_path)
        made.append(gw)
        gw.create(vxlan=vxlan)
        return gw

    yield factory
    for gw in made:
        gw.destroy()


@pytest.fixture
def publisher(mosquitto):
    pub = Publisher(mosquitto.port)
    yield pub
    pub.close()


@pytest.fixture
def domain():
    return f"{PREFIX}{secrets.token_hex(3)}"
