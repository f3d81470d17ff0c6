"""The `mqtt` config section as both daemons read it: wgkex's keys, plus the MQTT 5 session settings."""

from __future__ import annotations

import pytest

from wgmesh.config import ConfigError, parse_config

BASE = {"domains": ["ffmuc_welt"], "domain_prefixes": ["ffmuc_"]}


def mqtt_cfg(**mqtt):
    return parse_config({**BASE, "mqtt": {"broker_url": "mqtt.example.net", **mqtt}}, "test.yaml")


def test_empty_username_means_no_authentication_with_a_warning():
    # wgkex requires the key and passes "" through: a mosquitto without auth.
    cfg = mqtt_cfg(username="")
    assert cfg.mqtt.username is None and cfg.mqtt.password is None
    assert any("mqtt.username" in w and "no authentication" in w for w in cfg.warnings)


def test_empty_username_with_a_password_is_refused():
    with pytest.raises(ConfigError, match=r"mqtt.password: is set but mqtt.username is not"):
        mqtt_cfg(username="", password="secret")


def test_null_username_needs_no_warning():
    cfg = mqtt_cfg(username=None)
    assert cfg.mqtt.username is None
    assert not any("mqtt.username" in w for w in cfg.warnings)
