"""The one YAML config file both daemons read (wgkex's keys unchanged, plus ours).

`load_config()` parses and validates the whole file into frozen dataclasses, or
raises `ConfigError` whose message names the file, the key path and the
problem, e.g. ``config /etc/wgkex.yaml: mqtt.broker_port: must be an integer
1-65535, got 'abc'``. Daemons print that one line and exit 2 (`load_or_exit`).

Unknown keys at the top level and in wgkex's own sections (mqtt,
broker_listen, workers.<name>) only warn: upstream files carry extras. Unknown
keys in our own sections (broker, worker) are errors, so a typo cannot
silently switch a safety setting off.
"""

from __future__ import annotations

import ipaddress
import logging
import logging.config
import os
import socket
import stat
import sys
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

import yaml

from wgmesh import derive, logfilter, protocol
from wgmesh.worker.backend import split_host_port

ENV_CONFIG_FILE = "WGKEX_CONFIG_FILE"
DEFAULT_CONFIG_FILE = "/etc/wgkex.yaml"
WORKER_BACKENDS = ("auto", "kernel", "userspace")
MOSQUITTO_AUTOSAVE_S = 1800  # mosquitto's default autosave_interval: the window broker.key_buffer covers
PORTS = (1, 65535)  # the TCP port range, for every port the file names
# The worker unit's StateDirectory= (the worker role's): systemd makes it, owned by the unit's
# user, at every start.
WORKER_STATE_DIR = "/var/lib/wgmesh-worker"

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """A config file that cannot be used; str() is the one line to print."""


@dataclass(frozen=True)
class MqttConfig:
    broker_url: str = "localhost"
    broker_port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive: int = 5
    tls: bool = False
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    client_id: str | None = None
    # MQTT 5 Session Expiry Interval of persistent sessions (the workers'), in seconds: how long
    # mosquitto keeps queuing keys for a worker that is away. 0 ends the session at disconnect.
    session_expiry: int = 7 * 24 * 3600


@dataclass(frozen=True)
class ListenConfig:
    host: str = "::"
    port: int = 5000


@dataclass(frozen=True)
class RateLimitConfig:
    per_client_per_minute: int = 30
    burst: int = 10

    @property
    def enabled(self) -> bool:
        return self.per_client_per_minute > 0 and self.burst > 0


@dataclass(frozen=True)
class BrokerConfig:
    publish_timeout: float = 2.0
    max_body_bytes: int = 1024
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    blocklist: Mapping[str, frozenset[str]] = field(default_factory=dict)
    allowlist: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Peers whose X-Forwarded-For we believe (a reverse proxy in front of us).
    # Empty: the TCP peer address is the client, the header is ignored.
    trusted_proxies: tuple[str, ...] = ()
    # Keys answered 200 are kept in this file and published again after every MQTT reconnect,
    # so a mosquitto killed between two autosaves loses none (docs/broker.md). None = off.
    key_buffer: str | None = None
    key_buffer_retention: int = 3600  # > MOSQUITTO_AUTOSAVE_S
    key_buffer_max_keys: int = 100_000
    # Slow clients (docs/broker.md, "Slow and bad clients"): seconds to send the
    # headers, the body, and idle time between keep-alive requests.
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    keepalive_timeout: float = 15.0
    # Open HTTP connections at most; None: derived from RLIMIT_NOFILE at start.
    max_connections: int | None = None


@dataclass(frozen=True)
class WorkerConfig:
    name: str = ""
    backend: str = "auto"
    journal: str = "/var/lib/wgmesh/worker-journal.json"
    reconcile_interval: int = 300
    stale_after: int = 10800
    grace_period: int = 600
    # Public keys the worker never touches (the other gateways), each with the endpoint the
    # gateway role gave it or None. A pair member declares them without one (a standby must never
    # send with the pair's key) and wgmesh-ha applies it on promotion (docs/ha.md).
    static_peers: Mapping[str, str | None] = field(default_factory=dict)
    metrics_listen: tuple[str, int] | None = None  # Prometheus "host:port"; None = off
    # Per-domain interface names overriding the derived wg-<dom>/vx-<dom> (legacy names, tests).
    interfaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # A member of an HA pair: the file wgmesh-ha writes; stale-peer cleanup only while it says
    # "active" (docs/ha.md). None: not in a pair, cleanup always runs.
    ha_state_file: str | None = None
    # A pair member's last will ("0") waits this long (MQTT 5 Will Delay Interval): a member
    # back within it, or the active member's answer, keeps the pair online (docs/ha.md).
    ha_will_delay: int = 5
    # A pair member's sync channel (docs/ha.md): where a standby writes the endpoints its partner
    # learnt (wgmesh-ha promote reads them), and the marker it writes once it holds every key of
    # its partner (keepalived may track it). In the worker unit's StateDirectory=, the one place
    # its sandbox (ProtectSystem=strict) lets it write, whichever user it runs as.
    ha_endpoints_file: str = f"{WORKER_STATE_DIR}/partner-endpoints.json"
    ha_synced_file: str = f"{WORKER_STATE_DIR}/ha-synced"


@dataclass(frozen=True)
class _WorkerEntry:
    """One entry of wgkex's `workers` mapping (name -> {weight: N})."""

    weight: float = 1


@dataclass(frozen=True)
class Config:
    path: str
    domains: tuple[str, ...]
    domain_prefixes: tuple[str, ...]
    workers: Mapping[str, float]  # worker name -> weight (unlisted workers weigh the default)
    external_name: str | None
    mqtt: MqttConfig
    broker_listen: ListenConfig
    domain_rules: Mapping[str, str]
    broker: BrokerConfig
    worker: WorkerConfig
    logging_config: Mapping[str, Any] | None = None
    warnings: tuple[str, ...] = ()

    def rule_for(self, domain: str) -> str:
        return self.domain_rules.get(domain, derive.DEFAULT_RULE)

    def weight_of(self, worker: str) -> float:
        return self.workers.get(worker, _WorkerEntry.weight)


# --- validation helpers --------------------------------------------------------


def default_of(cls: type, name: str) -> Any:
    """The default of dataclass field `cls.name`: each default is written there and only there."""
    f = {f.name: f for f in fields(cls)}[name]  # KeyError names a reader asking for a field that is not there
    return f.default if f.default_factory is MISSING else f.default_factory()


def _keys_of(cls: type) -> tuple[str, ...]:
    """A section's known keys: its dataclass's fields."""
    return tuple(f.name for f in fields(cls))


class _Reader:
    """Collects the path for messages and the warnings for unknown keys.

    The scalar readers take `of`, the dataclass whose field of the key's name (its last
    level) gives the default when the key is absent; None: absent is None.
    """

    def __init__(self, path: str):
        self.path = path
        self.warnings: list[str] = []

    def fail(self, key: str, problem: str, value: Any = ...) -> ConfigError:
        got = "" if value is ... else f", got {value!r}"
        return ConfigError(f"config {self.path}: {key}: {problem}{got}")

    def section(
        self, data: Mapping, key: str, allowed: tuple[str, ...], strict: bool, name: str | None = None
    ) -> Mapping:
        value = data.get(key.rsplit(".", 1)[-1] if name is None else name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be a mapping", value)
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            msg = f"unknown key(s) {', '.join(unknown)} (known: {', '.join(allowed)})"
            if strict:
                raise self.fail(key, msg)
            self.warnings.append(f"config {self.path}: {key}: {msg}; ignored")
        return value

    @staticmethod
    def _get(data: Mapping, key: str, of: type | None) -> Any:
        name = key.rsplit(".", 1)[-1]
        if name in data:
            return data[name]
        return None if of is None else default_of(of, name)

    def int_(
        self, data: Mapping, key: str, of: type | None, lo: int, hi: int | None = None, optional: bool = False
    ) -> int | None:
        value = self._get(data, key, of)
        if value is None and optional:
            return None
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)  # upstream files sometimes quote ports
        rng = f"{lo}-{hi}" if hi is not None else f">= {lo}"
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            raise self.fail(key, f"must be an integer {rng}", value)
        return value

    def number(self, data: Mapping, key: str, of: type | None, positive: bool = True) -> float:
        value = self._get(data, key, of)
        if isinstance(value, bool) or not isinstance(value, int | float) or (positive and value <= 0):
            raise self.fail(key, "must be a number > 0" if positive else "must be a number", value)
        return float(value)

    def bool_(self, data: Mapping, key: str, of: type | None) -> bool:
        value = self._get(data, key, of)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false", value)
        return value

    def str_(self, data: Mapping, key: str, of: type | None, optional: bool = True) -> str | None:
        value = self._get(data, key, of)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, "must be a non-empty string", value)
        return value

    def str_list(self, data: Mapping, key: str, required: bool) -> tuple[str, ...]:
        value = data.get(key.rsplit(".", 1)[-1])
        if value is None:
            if required:
                raise self.fail(key, "is required (a non-empty list of strings)")
            return ()
        if not isinstance(value, list) or (required and not value):
            raise self.fail(key, "must be a non-empty list of strings" if required else "must be a list", value)
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.fail(f"{key}[{i}]", "must be a non-empty string", item)
        return tuple(value)

    def key_list(self, data: Mapping, key: str) -> tuple[str, ...]:
        keys = self.str_list(data, key, required=False)
        for i, item in enumerate(keys):
            self.check_key(f"{key}[{i}]", item)
        return keys

    def check_key(self, key: str, item: Any) -> None:
        if isinstance(item, str) and protocol.is_low_order_key(item):  # well-formed: the syntax message would mislead
            raise self.fail(key, "is a low-order Curve25519 point; no handshake can succeed with it", item)
        if not isinstance(item, str) or not protocol.is_valid_key(item):
            raise self.fail(key, "is not a WireGuard public key (44 chars base64)", item)


# --- sections -------------------------------------------------------------------

_TOP_KEYS = (
    "domains",
    "domain_prefixes",
    "workers",
    "externalName",
    "mqtt",
    "broker_listen",
    "domain_rules",
    "broker",
    "worker",
    "logging_config",
)


def _domains(r: _Reader, data: Mapping) -> tuple[tuple[str, ...], tuple[str, ...]]:
    prefixes = r.str_list(data, "domain_prefixes", required=True)
    domains = r.str_list(data, "domains", required=True)
    for i, domain in enumerate(domains):
        # a domain is an MQTT topic level (wireguard/<domain>/all) and part of interface names
        problem = protocol.topic_level_problem(domain)
        if problem:
            raise r.fail(f"domains[{i}]", f"domain {domain!r} {problem}")
        try:
            derive.interface_names(domain, prefixes)
        except ValueError as exc:
            raise r.fail(f"domains[{i}]", str(exc)) from None
    if len(set(domains)) != len(domains):
        raise r.fail("domains", "lists a domain twice", list(domains))
    return domains, prefixes


def _workers(r: _Reader, data: Mapping) -> dict[str, float]:
    value = data.get("workers") or {}
    if not isinstance(value, Mapping):
        raise r.fail("workers", "must be a mapping of worker name to {weight: N}", value)
    weights = {}
    for name, spec in value.items():
        spec = spec or {}
        if not isinstance(spec, Mapping):
            raise r.fail(f"workers.{name}", "must be a mapping like {weight: 30}", spec)
        r.section(value, f"workers.{name}", _keys_of(_WorkerEntry), strict=False, name=name)
        weights[str(name)] = r.number(spec, f"workers.{name}.weight", _WorkerEntry)
    return weights


def _mqtt(r: _Reader, data: Mapping) -> MqttConfig:
    m = r.section(data, "mqtt", _keys_of(MqttConfig), strict=False)
    cfg = MqttConfig(
        broker_url=r.str_(m, "mqtt.broker_url", MqttConfig, optional=False),
        broker_port=r.int_(m, "mqtt.broker_port", MqttConfig, *PORTS),
        username=_username(r, m),
        password=_password(r, m),
        keepalive=r.int_(m, "mqtt.keepalive", MqttConfig, 1, 0xFFFF),  # MQTT: a two-byte integer
        tls=r.bool_(m, "mqtt.tls", MqttConfig),
        ca_certs=r.str_(m, "mqtt.ca_certs", MqttConfig),
        certfile=r.str_(m, "mqtt.certfile", MqttConfig),
        keyfile=r.str_(m, "mqtt.keyfile", MqttConfig),
        client_id=r.str_(m, "mqtt.client_id", MqttConfig),
        session_expiry=r.int_(m, "mqtt.session_expiry", MqttConfig, 0, 0xFFFFFFFF),  # MQTT 5: four bytes
    )
    if cfg.session_expiry == 0:
        r.warnings.append(
            f"config {r.path}: mqtt.session_expiry: 0 ends a worker's MQTT session at every disconnect;"
            " keys published while it is away are lost"
        )
    if cfg.password is not None and cfg.username is None:
        raise r.fail("mqtt.password", "is set but mqtt.username is not")
    if bool(cfg.certfile) != bool(cfg.keyfile):
        raise r.fail("mqtt.certfile", "and mqtt.keyfile must be given together")
    for key in ("ca_certs", "certfile", "keyfile"):
        path = getattr(cfg, key)
        if path is not None and not os.path.isfile(path):
            raise r.fail(f"mqtt.{key}", "file does not exist", path)
    return cfg


def _username(r: _Reader, m: Mapping) -> str | None:
    # wgkex requires the key, so a mosquitto without auth may come with username: "".
    if m.get("username") == "":
        r.warnings.append(f'config {r.path}: mqtt.username: "" means no authentication (same as null)')
        return None
    return r.str_(m, "mqtt.username", MqttConfig)


def _password(r: _Reader, m: Mapping) -> str | None:
    value = m.get("password")
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise r.fail("mqtt.password", "must be a string")  # never echo a secret
    return str(value)


def _listen(r: _Reader, data: Mapping) -> ListenConfig:
    b = r.section(data, "broker_listen", _keys_of(ListenConfig), strict=False)
    return ListenConfig(
        host=r.str_(b, "broker_listen.host", ListenConfig, optional=False),
        port=r.int_(b, "broker_listen.port", ListenConfig, *PORTS),
    )


def _domain_rules(r: _Reader, data: Mapping, domains: tuple[str, ...]) -> dict[str, str]:
    value = data.get("domain_rules") or {}
    if not isinstance(value, Mapping):
        raise r.fail("domain_rules", "must be a mapping of domain to rule", value)
    for domain, rule in value.items():
        if domain not in domains:
            raise r.fail(f"domain_rules.{domain}", "is not one of the configured domains", list(domains))
        if rule not in derive.RULES:
            raise r.fail(f"domain_rules.{domain}", f"must be one of {', '.join(derive.RULES)}", rule)
    return dict(value)


def _key_lists(r: _Reader, b: Mapping, name: str, domains: tuple[str, ...]) -> dict[str, frozenset[str]]:
    value = b.get(name) or {}
    if not isinstance(value, Mapping):
        raise r.fail(f"broker.{name}", "must be a mapping of domain to a list of keys", value)
    out = {}
    for domain in value:
        if domain not in domains:
            raise r.fail(f"broker.{name}.{domain}", "is not one of the configured domains", list(domains))
        out[domain] = frozenset(r.key_list(value, f"broker.{name}.{domain}"))
    return out


def _broker(r: _Reader, data: Mapping, domains: tuple[str, ...]) -> BrokerConfig:
    b = r.section(data, "broker", _keys_of(BrokerConfig), strict=True)
    rl = r.section(b, "broker.rate_limit", _keys_of(RateLimitConfig), strict=True)
    proxies = r.str_list(b, "broker.trusted_proxies", required=False)
    for i, proxy in enumerate(proxies):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise r.fail(f"broker.trusted_proxies[{i}]", "must be an IP address or network", proxy) from None
    cfg = BrokerConfig(
        publish_timeout=r.number(b, "broker.publish_timeout", BrokerConfig),
        max_body_bytes=r.int_(b, "broker.max_body_bytes", BrokerConfig, 128, 1 << 20),
        rate_limit=RateLimitConfig(
            per_client_per_minute=r.int_(rl, "broker.rate_limit.per_client_per_minute", RateLimitConfig, 0),
            burst=r.int_(rl, "broker.rate_limit.burst", RateLimitConfig, 0),
        ),
        blocklist=_key_lists(r, b, "blocklist", domains),
        allowlist=_key_lists(r, b, "allowlist", domains),
        trusted_proxies=proxies,
        key_buffer=r.str_(b, "broker.key_buffer", BrokerConfig),
        key_buffer_retention=r.int_(b, "broker.key_buffer_retention", BrokerConfig, 1),
        key_buffer_max_keys=r.int_(b, "broker.key_buffer_max_keys", BrokerConfig, 1),
        header_timeout=r.number(b, "broker.header_timeout", BrokerConfig),
        body_timeout=r.number(b, "broker.body_timeout", BrokerConfig),
        keepalive_timeout=r.number(b, "broker.keepalive_timeout", BrokerConfig),
        max_connections=r.int_(b, "broker.max_connections", BrokerConfig, 1, optional=True),
    )
    if cfg.key_buffer and cfg.key_buffer_retention < MOSQUITTO_AUTOSAVE_S:
        r.warnings.append(
            f"config {r.path}: broker.key_buffer_retention: {cfg.key_buffer_retention} s is shorter than"
            f" mosquitto's default autosave_interval ({MOSQUITTO_AUTOSAVE_S} s): keep it above yours"
        )
    return cfg


def _listen_address(r: _Reader, w: Mapping, key: str) -> tuple[str, int] | None:
    value = w.get(key.rsplit(".", 1)[-1])
    if value is None:
        return None
    host, sep, port = str(value).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not PORTS[0] <= int(port) <= PORTS[1]:
        raise r.fail(key, 'must be "host:port" (e.g. "127.0.0.1:9561" or "[::1]:9561")', value)
    return host, int(port)


def _worker_interfaces(r: _Reader, w: Mapping, domains: tuple[str, ...]) -> dict[str, dict[str, str]]:
    value = w.get("interfaces") or {}
    if not isinstance(value, Mapping):
        raise r.fail("worker.interfaces", "must be a mapping of domain to {wg: NAME, vx: NAME}", value)
    out = {}
    for domain, names in value.items():
        key = f"worker.interfaces.{domain}"
        if domain not in domains:
            raise r.fail(key, "is not one of the configured domains", list(domains))
        r.section(value, key, ("wg", "vx"), strict=True, name=domain)
        out[domain] = {}
        for kind in ("wg", "vx"):
            name = r.str_(names, f"{key}.{kind}", None)  # absent: the derived name
            if name is None:
                continue
            problem = derive.ifname_problem(name)  # the same rule as the derived names
            if problem:
                raise r.fail(f"{key}.{kind}", f"is not a Linux interface name: it {problem}", name)
            out[domain][kind] = name
    return out


def _static_peers(r: _Reader, w: Mapping) -> dict[str, str | None]:
    """A list of public keys (wgkex's form), or public key -> endpoint ("host:port") or null."""
    value = w.get("static_peers")
    if value is None or isinstance(value, list):
        return dict.fromkeys(r.key_list(w, "worker.static_peers"))
    if not isinstance(value, Mapping):
        raise r.fail(
            "worker.static_peers", "must be a list of public keys or a mapping of public key to endpoint", value
        )
    out = {}
    for key, endpoint in value.items():
        r.check_key(f"worker.static_peers.{key}", key)
        if endpoint is not None:
            if not isinstance(endpoint, str):
                raise r.fail(f"worker.static_peers.{key}", "must be an endpoint HOST:PORT or null", endpoint)
            try:
                split_host_port(endpoint)
            except ValueError as exc:
                raise r.fail(f"worker.static_peers.{key}", str(exc)) from None
        out[key] = endpoint
    return out


def _worker(r: _Reader, data: Mapping, domains: tuple[str, ...] = ()) -> WorkerConfig:
    w = r.section(data, "worker", _keys_of(WorkerConfig), strict=True)
    backend = w.get("backend", default_of(WorkerConfig, "backend"))
    if backend not in WORKER_BACKENDS:
        raise r.fail("worker.backend", f"must be one of {', '.join(WORKER_BACKENDS)}", backend)
    return WorkerConfig(
        name=r.str_(w, "worker.name", None) or socket.gethostname(),  # what wgkex uses
        backend=backend,
        journal=r.str_(w, "worker.journal", WorkerConfig, optional=False),
        reconcile_interval=r.int_(w, "worker.reconcile_interval", WorkerConfig, 1),
        stale_after=r.int_(w, "worker.stale_after", WorkerConfig, 1),
        grace_period=r.int_(w, "worker.grace_period", WorkerConfig, 0),
        static_peers=_static_peers(r, w),
        metrics_listen=_listen_address(r, w, "worker.metrics_listen"),
        interfaces=_worker_interfaces(r, w, domains),
        ha_state_file=r.str_(w, "worker.ha_state_file", WorkerConfig),
        ha_will_delay=r.int_(w, "worker.ha_will_delay", WorkerConfig, 0, 0xFFFFFFFF),  # MQTT 5: four bytes
        ha_endpoints_file=r.str_(w, "worker.ha_endpoints_file", WorkerConfig, optional=False),
        ha_synced_file=r.str_(w, "worker.ha_synced_file", WorkerConfig, optional=False),
    )


# --- entry points -----------------------------------------------------------------


def config_path(cli_path: str | None = None) -> str:
    """--config FILE, else $WGKEX_CONFIG_FILE, else /etc/wgkex.yaml (as wgkex)."""
    return cli_path or os.environ.get(ENV_CONFIG_FILE) or DEFAULT_CONFIG_FILE


def parse_config(data: Any, path: str = "<string>") -> Config:
    r = _Reader(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"config {path}: top level must be a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _TOP_KEYS)
    if unknown:
        r.warnings.append(f"config {path}: unknown top-level key(s) {', '.join(unknown)}; ignored")
    domains, prefixes = _domains(r, data)
    logging_config = data.get("logging_config")
    if logging_config is not None and not isinstance(logging_config, Mapping):
        raise r.fail("logging_config", "must be a logging.config.dictConfig mapping", logging_config)
    external = data.get("externalName")
    if external is not None and (not isinstance(external, str) or not external):
        raise r.fail("externalName", "must be a non-empty string (the gateway's public name)", external)
    cfg = Config(
        path=path,
        domains=domains,
        domain_prefixes=prefixes,
        workers=_workers(r, data),
        external_name=external,
        mqtt=_mqtt(r, data),
        broker_listen=_listen(r, data),
        domain_rules=_domain_rules(r, data, domains),
        broker=_broker(r, data, domains),
        worker=_worker(r, data, domains),
        logging_config=logging_config,
        warnings=tuple(r.warnings),
    )
    return replace(cfg, warnings=cfg.warnings + _proxy_warnings(cfg))


def _proxy_warnings(cfg: Config) -> tuple[str, ...]:
    """Listening on loopback means a reverse proxy in front; without it in trusted_proxies the
    broker cannot tell nodes apart and does not rate-limit them (docs/broker.md, behind a proxy)."""
    host = cfg.broker_listen.host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or not cfg.broker.rate_limit.enabled:
        return ()
    proxies = [ipaddress.ip_network(p, strict=False) for p in cfg.broker.trusted_proxies]
    peers = ("127.0.0.1", "::1") if host == "localhost" else (host,)  # where the proxy connects from
    if all(any(ipaddress.ip_address(peer) in net for net in proxies) for peer in peers):
        return ()
    return (
        f"config {cfg.path}: broker_listen.host {host} is a loopback address, so nodes come through a "
        "reverse proxy, and every node arrives from the proxy's address: the per-client rate limit is off "
        'for them until you list the proxy in broker.trusted_proxies (e.g. [127.0.0.1, "::1"])',
    )


def _readable_secret_warning(path: str, st: os.stat_result, cfg: Config) -> tuple[str, ...]:
    """Others may read the password: world bits, or group bits of a group that is not the daemon's own
    (the roles install the file root-owned, 0640, in the service's group, which cannot change it).
    Root reading a daemon's file (wgmesh-ha, the worker's) judges only the world bits: the group is
    the daemon's, and the daemon checks it."""
    group_trusted = st.st_gid == os.getegid() or os.geteuid() == 0
    readers = 0o007 | (0 if group_trusted else 0o070)
    if cfg.mqtt.password is None or not st.st_mode & readers:
        return ()
    return (
        f"config {path}: holds mqtt.password but its mode is {stat.S_IMODE(st.st_mode):04o}, readable beyond its "
        f"owner and the daemon's group; chmod 600 {path}",
    )


def load_config(path: str | None = None) -> Config:
    path = config_path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            st = os.fstat(fh.fileno())  # of the file read, not of whatever the path names later
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1} column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"config {path}: not valid YAML{at}: {problem}") from None
    cfg = parse_config(data, path)
    return replace(cfg, warnings=cfg.warnings + _readable_secret_warning(path, st, cfg))


def load_or_exit(path: str | None = None) -> Config:
    """For the daemons' main(): the one-line error on stderr and exit 2."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(2) from None
    return cfg


def _stderr_is_the_journal() -> bool:
    """systemd's documented test: JOURNAL_STREAM names stderr's device:inode (the journal
    stamps each line itself)."""
    try:
        dev, ino = (int(part) for part in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(cfg: Config, level: int = logging.INFO) -> None:
    """Apply the file's logging_config (wgkex's key) or a plain stderr format."""
    if cfg.logging_config:
        try:
            logging.config.dictConfig(dict(cfg.logging_config))
        except (ValueError, TypeError, AttributeError, ImportError) as exc:
            print(f"config {cfg.path}: logging_config: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    else:
        stamp = "" if _stderr_is_the_journal() else "%(asctime)s "
        logging.basicConfig(level=level, format=stamp + "%(levelname)s %(name)s: %(message)s")
    logfilter.install()
    for warning in cfg.warnings:
        log.warning("%s", warning)
