"""Fixtures for the daemons' unit tests: config builders and an MQTT double.

Unit tests replace the MQTT link with `FakeTransport` (it records what would be
published and can be told to fail); the real link is covered by
tests/integration/services against a real mosquitto.
"""

from __future__ import annotations

import copy
import logging

import pytest

from wgmesh.broker.transport import PublishError
from wgmesh.config import parse_config
from wgmesh.logfilter import RepeatFilter

KEY1 = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
KEY2 = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="
KEY3 = "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg="

BASE_CONFIG = {
    "domains": ["ffmuc_welt", "ffmuc_uml"],
    "domain_prefixes": ["ffmuc_"],
    "mqtt": {"broker_url": "127.0.0.1", "broker_port": 1883},
    "broker": {"rate_limit": {"per_client_per_minute": 0, "burst": 0}},
}


def make_config(**overrides):
    """BASE_CONFIG with top-level keys replaced (deep copies, safe to mutate)."""
    data = copy.deepcopy(BASE_CONFIG)
    data.update(copy.deepcopy(overrides))
    return parse_config(data, "test.yaml")


class FakeTransport:
    """Stands in for BrokerTransport: records publishes, can fail like a lost link."""

    def __init__(self):
        self.connected = True
        self.synced = True
        self.last_error = None
        self.published: list[tuple[str, str, int]] = []
        self.fail_with: str | None = None

    async def publish(self, topic: str, payload: str, qos: int, timeout: float) -> None:
        if self.fail_with is not None:
            raise PublishError(self.fail_with)
        self.published.append((topic, payload, qos))


@pytest.fixture(autouse=True)
def no_repeat_filter_left_behind():
    """setup_logging() puts a RepeatFilter on the root handlers, which in a test run include
    pytest's own capture handler: take it off again, or later tests lose repeated lines."""
    yield
    for handler in logging.getLogger().handlers:
        for flt in [f for f in handler.filters if isinstance(f, RepeatFilter)]:
            handler.removeFilter(flt)


@pytest.fixture
def transport():
    return FakeTransport()


# Fixtures rather than imports: two conftest.py files (unit, integration) must
# not compete for the module name "conftest".
@pytest.fixture
def config_factory():
    return make_config


@pytest.fixture
def base_config():
    return copy.deepcopy(BASE_CONFIG)


@pytest.fixture
def keys():
    return (KEY1, KEY2, KEY3)
