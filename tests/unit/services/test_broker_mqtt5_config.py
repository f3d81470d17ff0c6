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


def test_session_expiry_defaults_to_a_week_and_0_warns():
    assert mqtt_cfg().mqtt.session_expiry == 7 * 24 * 3600
    cfg = mqtt_cfg(session_expiry=0)
    assert cfg.mqtt.session_expiry == 0
    assert any("mqtt.session_expiry: 0" in w for w in cfg.warnings)
    assert mqtt_cfg(session_expiry=0xFFFFFFFF).mqtt.session_expiry == 0xFFFFFFFF  # MQTT 5: never expires


def test_session_expiry_out_of_range_names_the_key():
    with pytest.raises(ConfigError, match=r"mqtt.session_expiry: must be an integer 0-4294967295"):
        mqtt_cfg(session_expiry=-1)
