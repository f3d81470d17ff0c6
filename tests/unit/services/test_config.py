"""wgmesh.config: the shared YAML schema, defaults and one-line errors naming the key path."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

import pytest
import yaml

from wgmesh.config import ConfigError, load_config, load_or_exit, parse_config, setup_logging

KEY1 = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
LOW_ORDER = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="  # u = 0: valid syntax, order 2
BASE_CONFIG = {"domains": ["ffmuc_welt", "ffmuc_uml"], "domain_prefixes": ["ffmuc_"]}


def make_config(**overrides):
    return parse_config({**BASE_CONFIG, **overrides}, "test.yaml")


UPSTREAM_FILE = """
domains: [ffmuc_muc_cty, ffmuc_welt]
domain_prefixes: [ffmuc_, ffdon_]
workers:
  gw04.ext.ffmuc.net: {weight: 30}
  gw05.ext.ffmuc.net: {weight: 20}
externalName: gw04.ext.ffmuc.net
mqtt: {broker_url: mqtt.ffmuc.net, broker_port: 1883, username: wgkex, password: secret, keepalive: 5, tls: false}
broker_listen: {host: "::", port: 5000}
logging_config:
  version: 1
  formatters: {plain: {format: "%(message)s"}}
"""


def test_upstream_wgkex_file_loads_unchanged(tmp_path):
    path = tmp_path / "wgkex.yaml"
    path.write_text(UPSTREAM_FILE)
    path.chmod(0o600)  # it holds the MQTT password
    cfg = load_config(str(path))
    assert cfg.domains == ("ffmuc_muc_cty", "ffmuc_welt")
    assert cfg.weight_of("gw04.ext.ffmuc.net") == 30
    assert cfg.weight_of("unlisted") == 1
    assert cfg.external_name == "gw04.ext.ffmuc.net"
    assert (cfg.mqtt.username, cfg.mqtt.password, cfg.mqtt.broker_url) == ("wgkex", "secret", "mqtt.ffmuc.net")
    assert "secret" not in repr(cfg.mqtt)
    assert cfg.broker_listen.port == 5000
    assert cfg.logging_config["version"] == 1
    assert cfg.warnings == ()


def test_defaults_of_our_sections():
    cfg = parse_config({"domains": ["ffmuc_welt"], "domain_prefixes": ["ffmuc_"]})
    assert cfg.broker.publish_timeout == 2.0
    assert cfg.broker.max_body_bytes == 1024
    assert (cfg.broker.rate_limit.per_client_per_minute, cfg.broker.rate_limit.burst) == (30, 10)
    assert cfg.worker.name == socket.gethostname()
    assert cfg.worker.backend == "auto"
    assert (cfg.worker.stale_after, cfg.worker.grace_period, cfg.worker.reconcile_interval) == (10800, 600, 300)
    assert cfg.rule_for("ffmuc_welt") == "ffmuc"
    assert (cfg.mqtt.broker_port, cfg.mqtt.keepalive, cfg.mqtt.tls) == (1883, 5, False)


def test_quoted_port_is_accepted():
    assert make_config(mqtt={"broker_port": "8883"}).mqtt.broker_port == 8883


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mqtt": {"broker_port": "abc"}}, "mqtt.broker_port: must be an integer 1-65535, got 'abc'"),
        ({"mqtt": {"broker_port": 70000}}, "mqtt.broker_port: must be an integer 1-65535, got 70000"),
        ({"mqtt": {"tls": "yes"}}, "mqtt.tls: must be true or false, got 'yes'"),
        ({"mqtt": {"password": "x"}}, "mqtt.password: is set but mqtt.username is not"),
        ({"mqtt": {"ca_certs": "/nonexistent/ca.pem"}}, "mqtt.ca_certs: file does not exist"),
        ({"domains": []}, "domains: must be a non-empty list of strings"),
        ({"domains": "ffmuc_welt"}, "domains: must be a non-empty list of strings"),
        ({"domains": ["ffmuc_welt", "other"]}, "domains[1]: domain 'other' does not start with any configured prefix"),
        ({"domains": ["ffmuc_a_very_long_name"]}, "domains[0]: interface name 'wg-a_very_long_name' for domain"),
        ({"domain_prefixes": None}, "domain_prefixes: is required"),
        ({"workers": {"gw1.example.net": {"weight": "heavy"}}}, "workers.gw1.example.net.weight: must be a number > 0"),
        ({"broker_listen": {"port": 0}}, "broker_listen.port: must be an integer 1-65535, got 0"),
        ({"domain_rules": {"ffmuc_welt": "md5"}}, "domain_rules.ffmuc_welt: must be one of ffmuc, gluon, got 'md5'"),
        ({"domain_rules": {"ffmuc_x": "gluon"}}, "domain_rules.ffmuc_x: is not one of the configured domains"),
        ({"broker": {"publish_timout": 1}}, "broker: unknown key(s) publish_timout"),
        ({"broker": {"publish_timeout": 0}}, "broker.publish_timeout: must be a number > 0, got 0"),
        ({"broker": {"rate_limit": {"burst": -1}}}, "broker.rate_limit.burst: must be an integer >= 0, got -1"),
        ({"broker": {"blocklist": {"ffmuc_welt": ["nokey"]}}}, "broker.blocklist.ffmuc_welt[0]: is not a WireGuard"),
        (
            {"broker": {"allowlist": {"ffmuc_x": [KEY1]}}},
            "broker.allowlist.ffmuc_x: is not one of the configured domains",
        ),
        ({"broker": {"trusted_proxies": ["proxy"]}}, "broker.trusted_proxies[0]: must be an IP address or network"),
        ({"worker": {"backend": "ebpf"}}, "worker.backend: must be one of auto, kernel, userspace, got 'ebpf'"),
        ({"worker": {"static_peers": [KEY1 + "\n"]}}, "worker.static_peers[0]: is not a WireGuard public key"),
        ({"worker": {"grace_period": -5}}, "worker.grace_period: must be an integer >= 0, got -5"),
        ({"externalName": 5}, "externalName: must be a non-empty string"),
    ],
)
def test_errors_name_the_key_path(overrides, message):
    data = {**BASE_CONFIG, **overrides}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        parse_config(data, "/etc/wgkex.yaml")
    assert str(err.value).startswith("config /etc/wgkex.yaml: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_password_is_never_echoed():
    with pytest.raises(ConfigError) as err:
        make_config(mqtt={"username": "u", "password": ["s3cret-list"]})
    assert "s3cret" not in str(err.value)


def test_unknown_keys_warn_in_upstream_sections_only():
    cfg = make_config(
        extra_stuff=1, mqtt={"broker_url": "h", "qos": 2}, workers={"gw1": {"weight": 2, "location": "muc"}}
    )
    joined = " | ".join(cfg.warnings)
    assert "unknown top-level key(s) extra_stuff" in joined
    assert "mqtt: unknown key(s) qos" in joined
    assert "workers.gw1: unknown key(s) location" in joined
    with pytest.raises(ConfigError, match=r"worker: unknown key\(s\) nmae"):
        make_config(worker={"nmae": "gw1"})


def test_file_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^config /nonexistent/wgkex.yaml: cannot read: No such file"):
        load_config("/nonexistent/wgkex.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("domains: [ffmuc_welt\nmqtt: {\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+ column \d+"):
        load_config(str(bad))
    top = tmp_path / "list.yaml"
    top.write_text("- a\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(str(top))


def test_path_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump({**BASE_CONFIG, "domains": ["ffmuc_env"]}))
    monkeypatch.setenv("WGKEX_CONFIG_FILE", str(path))
    assert load_config().domains == ("ffmuc_env",)
    assert load_config(None).path == str(path)


def test_load_or_exit_prints_one_line_and_exits_2(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE_CONFIG, "mqtt": {"broker_port": "abc"}}))
    with pytest.raises(SystemExit) as exc:
        load_or_exit(str(path))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == f"config {path}: mqtt.broker_port: must be an integer 1-65535, got 'abc'\n"


def test_logging_config_is_applied():
    cfg = make_config(
        logging_config={"version": 1, "disable_existing_loggers": False, "loggers": {"h5.test": {"level": "ERROR"}}}
    )
    setup_logging(cfg)
    assert logging.getLogger("h5.test").level == logging.ERROR


LOG_ONE_LINE = """
import logging, sys
from wgmesh.config import parse_config, setup_logging
setup_logging(parse_config({"domains": ["ffmuc_welt"], "domain_prefixes": ["ffmuc_"]}, "t.yaml"))
logging.getLogger("wgmesh.test").warning("one line")
"""


@pytest.mark.parametrize("to_journal", [True, False])
def test_stderr_lines_carry_a_time_only_when_the_journal_does_not_add_one(tmp_path, to_journal):
    """systemd sets JOURNAL_STREAM to stderr's device:inode when stderr is the journal,
    which stamps every line itself: a second time in the text only doubles it."""
    stderr_file = tmp_path / "stderr"
    with open(stderr_file, "w") as err:
        st = os.fstat(err.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}" if to_journal else "0:0"}
        subprocess.run([sys.executable, "-c", LOG_ONE_LINE], stderr=err, env=env, check=True)
    line = stderr_file.read_text().strip()
    assert line.endswith("WARNING wgmesh.test: one line")
    assert (line == "WARNING wgmesh.test: one line") is to_journal, line


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("wg-we%dlt", "contains '%'"),  # the kernel takes '%' as a name template
        ("wg-\u00fc" + "a" * 11, "16 bytes"),  # IFNAMSIZ counts bytes, not characters
        ("wg/x", "contains '/'"),
    ],
)
def test_worker_interface_override_uses_the_kernel_name_rule(name, problem):
    with pytest.raises(ConfigError) as err:
        make_config(worker={"interfaces": {"ffmuc_welt": {"wg": name}}})
    assert "worker.interfaces.ffmuc_welt.wg" in str(err.value)
    assert problem in str(err.value)


def test_worker_interface_override_accepts_a_valid_name():
    cfg = make_config(worker={"interfaces": {"ffmuc_welt": {"wg": "wg-x12345678901"}}})
    assert cfg.worker.interfaces["ffmuc_welt"]["wg"] == "wg-x12345678901"


@pytest.mark.parametrize(
    ("section", "key_path"),
    [
        ({"worker": {"static_peers": [KEY1, LOW_ORDER]}}, "worker.static_peers[1]"),
        ({"broker": {"blocklist": {"ffmuc_welt": [LOW_ORDER]}}}, "broker.blocklist.ffmuc_welt[0]"),
        ({"broker": {"allowlist": {"ffmuc_uml": [LOW_ORDER]}}}, "broker.allowlist.ffmuc_uml[0]"),
    ],
)
def test_low_order_key_in_a_key_list_is_named_as_such(section, key_path):
    # The key has the right syntax, so "not a WireGuard public key (44 chars base64)" would send
    # the reader looking for a typo; say what is wrong with it instead (as the broker's 400 does).
    with pytest.raises(ConfigError) as err:
        make_config(**section)
    assert f"{key_path}: is a low-order Curve25519 point" in str(err.value)
    assert "44 chars" not in str(err.value)


def test_worker_ha_state_file():
    assert make_config().worker.ha_state_file is None  # not in a pair: cleanup always runs
    cfg = make_config(worker={"ha_state_file": "/run/wgmesh/ha-state"})
    assert cfg.worker.ha_state_file == "/run/wgmesh/ha-state"
    with pytest.raises(ConfigError, match=r"worker\.ha_state_file: must be a non-empty string"):
        make_config(worker={"ha_state_file": ""})


def test_worker_ha_will_delay():
    assert make_config().worker.ha_will_delay == 5
    assert make_config(worker={"ha_will_delay": 0}).worker.ha_will_delay == 0  # the will at once
    with pytest.raises(ConfigError, match=r"worker\.ha_will_delay: must be an integer 0-4294967295"):
        make_config(worker={"ha_will_delay": -1})


KEY2 = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="


def test_static_peers_as_a_list_have_no_endpoint():
    assert make_config(worker={"static_peers": [KEY1]}).worker.static_peers == {KEY1: None}


def test_static_peers_may_map_keys_to_the_endpoints_wgmesh_ha_applies_on_promotion():
    cfg = make_config(worker={"static_peers": {KEY1: "gw2.example.net:40011", KEY2: None}})
    assert cfg.worker.static_peers == {KEY1: "gw2.example.net:40011", KEY2: None}
    assert KEY1 in frozenset(cfg.worker.static_peers)  # the worker protects the keys alike


@pytest.mark.parametrize(
    ("peers", "problem"),
    [
        ({"nokey": None}, "worker.static_peers.nokey: is not a WireGuard public key"),
        ({LOW_ORDER: None}, f"worker.static_peers.{LOW_ORDER}: is a low-order Curve25519 point"),
        ({KEY1: "gw2.example.net"}, f"worker.static_peers.{KEY1}: endpoint 'gw2.example.net' is not HOST:PORT"),
        ({KEY1: "gw2:0"}, f"worker.static_peers.{KEY1}: endpoint 'gw2:0' is not HOST:PORT with a port 1-65535"),
        ({KEY1: "2001:db8::1:4242"}, f"worker.static_peers.{KEY1}: endpoint '2001:db8::1:4242': an IPv6 address goes"),
        ({KEY1: 4242}, f"worker.static_peers.{KEY1}: must be an endpoint HOST:PORT or null, got 4242"),
        ("gw2", "worker.static_peers: must be a list of public keys or a mapping of public key to endpoint"),
    ],
)
def test_a_bad_static_peer_is_named_with_its_key(peers, problem):
    with pytest.raises(ConfigError) as err:
        make_config(worker={"static_peers": peers})
    assert problem in str(err.value)
