"""Domains become MQTT topic levels and interface names: both rules are checked at config time.

A domain with an MQTT wildcard or separator once passed --check, then the broker answered 500
for it and the worker died on subscribing ("Invalid subscription filter") for all its domains.
"""

from __future__ import annotations

import pytest

from wgmesh.config import ConfigError, parse_config


@pytest.mark.parametrize(
    ("domain", "problem"),
    [
        ("ffmuc_a+b", "'+'"),
        ("ffmuc_a#", "'#'"),
        ("ffmuc_#", "'#'"),
        ("ffmuc_+", "'+'"),
        ("ffmuc_a/b", "'/'"),
        ("ffmuc_a\x00b", "NUL"),
        ("ffmuc_a\x07", "control character"),
    ],
)
def test_domain_that_is_no_mqtt_topic_level_is_refused_naming_key_and_domain(domain, problem):
    with pytest.raises(ConfigError) as err:
        parse_config({"domains": ["ffmuc_welt", domain], "domain_prefixes": ["ffmuc_"]}, "/etc/wgkex.yaml")
    message = str(err.value)
    assert message.startswith("config /etc/wgkex.yaml: domains[1]: ")
    assert repr(domain) in message
    assert problem in message


def test_domain_too_long_for_an_mqtt_topic_is_refused():
    prefix = "p" * 70_000
    with pytest.raises(ConfigError, match=r"domains\[0\]: .*bytes"):
        parse_config({"domains": [prefix + "welt"], "domain_prefixes": [prefix]})


def test_domain_that_is_no_interface_name_is_refused():
    with pytest.raises(ConfigError, match=r"domains\[0\]: interface name 'wg-a:b' for domain 'ffmuc_a:b'"):
        parse_config({"domains": ["ffmuc_a:b"], "domain_prefixes": ["ffmuc_"]})


def test_ordinary_domains_pass():
    cfg = parse_config({"domains": ["ffmuc_welt", "ffmuc_muc_cty", "ffmuc_ü"], "domain_prefixes": ["ffmuc_"]})
    assert cfg.domains == ("ffmuc_welt", "ffmuc_muc_cty", "ffmuc_ü")
