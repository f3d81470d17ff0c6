"""config: each default is written once, in its dataclass field, so file and code cannot disagree."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from wgmesh.config import BrokerConfig, ListenConfig, MqttConfig, RateLimitConfig, WorkerConfig, parse_config

REQUIRED = {"domains": ["ffmuc_welt"], "domain_prefixes": ["ffmuc_"]}


@pytest.mark.parametrize(
    "sections",
    [
        {},  # sections left out
        {"mqtt": None, "broker_listen": None, "broker": None, "worker": None},  # "mqtt:" with nothing under it
        {"mqtt": {}, "broker_listen": {}, "broker": {"rate_limit": {}}, "worker": {}},
    ],
    ids=["absent", "null", "empty"],
)
def test_a_minimal_config_is_the_dataclass_defaults(sections):
    # Changing a field's default must change what a file without that key gets; a literal left
    # in a reader would make the two differ here.
    cfg = parse_config({**REQUIRED, **sections})
    assert cfg.mqtt == MqttConfig()
    assert cfg.broker_listen == ListenConfig()
    assert cfg.broker.rate_limit == RateLimitConfig()
    assert cfg.broker == BrokerConfig()
    assert cfg.worker == replace(WorkerConfig(), name=socket.gethostname())  # computed: wgkex's default name


def test_a_listed_worker_without_weight_weighs_as_an_unlisted_one():
    cfg = parse_config({**REQUIRED, "workers": {"gw1": None, "gw2": {}}})
    assert cfg.weight_of("gw1") == cfg.weight_of("gw2") == cfg.weight_of("unlisted")
