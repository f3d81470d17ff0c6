"""config: the broker's HTTP limits, the reverse-proxy warning and the password file check."""

from __future__ import annotations

import os

import pytest
import yaml

from wgmesh.config import ConfigError, load_config

BASE = {"domains": ["ffmuc_welt"], "domain_prefixes": ["ffmuc_"]}


def write(tmp_path, data: dict, mode: int):
    path = tmp_path / "wgkex.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_password_in_a_file_others_can_read_warns(tmp_path, monkeypatch, mode):
    path = write(tmp_path, {**BASE, "mqtt": {"username": "wgkex", "password": "s3cret"}}, mode)
    # The file's group is not the daemon's: its members may read the password. (A daemon's own
    # user; the tests may run as root.)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getegid", lambda: os.stat(path).st_gid + 1)
    warnings = load_config(path).warnings
    assert len(warnings) == 1, warnings
    assert path in warnings[0]
    assert f"{mode:04o}" in warnings[0]
    assert "mqtt.password" in warnings[0]
    assert "s3cret" not in warnings[0]


@pytest.mark.parametrize(
    ("mqtt", "mode"),
    [({"username": "wgkex", "password": "s3cret"}, 0o600), ({"username": "wgkex"}, 0o644), ({}, 0o644)],
)
def test_private_file_or_no_password_is_quiet(tmp_path, mqtt, mode):
    assert load_config(write(tmp_path, {**BASE, "mqtt": mqtt}, mode)).warnings == ()


def test_group_readable_by_the_daemons_own_group_is_quiet(tmp_path, monkeypatch):
    """The roles' shape: root-owned, 0640, group = the service's own group (it cannot change the file)."""
    path = write(tmp_path, {**BASE, "mqtt": {"username": "wgkex", "password": "s3cret"}}, 0o640)
    monkeypatch.setattr(os, "getegid", lambda: os.stat(path).st_gid)
    assert load_config(path).warnings == ()


def test_root_reading_a_daemons_file_judges_only_the_world_bits(tmp_path, monkeypatch):
    """wgmesh-ha runs as root and reads the worker's config (root-owned, 0640, the worker's group):
    that group is the daemon's, not root's, and the worker itself checks it. Every promotion on
    every pair member logged a false "chmod 600" (seen in the lab's journal)."""
    secret = {**BASE, "mqtt": {"username": "wgkex", "password": "s3cret"}}
    path = write(tmp_path, secret, 0o640)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "getegid", lambda: os.stat(path).st_gid + 1)
    assert load_config(path).warnings == ()
    path = write(tmp_path, secret, 0o644)
    assert len(load_config(path).warnings) == 1


def test_http_limits_defaults_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, BASE, 0o600)).broker
    assert (cfg.header_timeout, cfg.body_timeout, cfg.keepalive_timeout, cfg.max_connections) == (10, 10, 15, None)
    broker = {"header_timeout": 3, "body_timeout": 4.5, "keepalive_timeout": 5, "max_connections": 100}
    cfg = load_config(write(tmp_path, {**BASE, "broker": broker}, 0o600)).broker
    assert (cfg.header_timeout, cfg.body_timeout, cfg.keepalive_timeout, cfg.max_connections) == (3, 4.5, 5, 100)


@pytest.mark.parametrize(
    ("broker", "message"),
    [
        ({"header_timeout": 0}, "broker.header_timeout: must be a number > 0"),
        ({"body_timeout": "10s"}, "broker.body_timeout: must be a number > 0"),
        ({"keepalive_timeout": -1}, "broker.keepalive_timeout: must be a number > 0"),
        ({"max_connections": 0}, "broker.max_connections: must be an integer >= 1"),
    ],
)
def test_http_limit_errors_name_the_key(tmp_path, broker, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, {**BASE, "broker": broker}, 0o600))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_listening_on_loopback_without_trusted_proxy_warns(tmp_path, host):
    path = write(tmp_path, {**BASE, "broker_listen": {"host": host, "port": 5000}}, 0o600)
    warnings = load_config(path).warnings
    assert len(warnings) == 1, warnings
    assert "broker.trusted_proxies" in warnings[0]
    assert "rate limit" in warnings[0]


@pytest.mark.parametrize(
    "data",
    [
        {"broker_listen": {"host": "127.0.0.1"}, "broker": {"trusted_proxies": ["127.0.0.1", "::1"]}},
        {"broker_listen": {"host": "127.0.0.1"}, "broker": {"rate_limit": {"per_client_per_minute": 0}}},
        {"broker_listen": {"host": "::"}},
    ],
)
def test_no_proxy_warning_when_it_cannot_matter(tmp_path, data):
    assert load_config(write(tmp_path, {**BASE, **data}, 0o600)).warnings == ()
