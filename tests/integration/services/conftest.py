"""Shared fixtures for the daemon integration tests: a real mosquitto.

`mosquitto` starts mosquitto 2.x on 127.0.0.1 at a free port, with its own
config, persistence directory and log under tmp_path; `mosquitto_factory`
builds variants (password file via mosquitto_passwd, TLS listener). Both
return a `Mosquitto` that can `stop()`, `start()` and `restart()` on the same
port with the same persistence (for "restart mosquitto mid-stream" tests).
`broker_factory` starts the real broker process (`python -m wgmesh.broker`)
against such a mosquitto. Every process started here is stopped by PID at
teardown.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.support.net import free_port, wait_for_port
from tests.support.procs import terminate  # also imported from here by worker_fixtures.py

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


@dataclass
class Mosquitto:
    """One mosquitto instance under `workdir`; restartable on the same port."""

    workdir: Path
    port: int
    users: dict[str, str] = field(default_factory=dict)
    tls: dict[str, str] | None = None  # {"cafile", "certfile", "keyfile"} of the server
    acl: str | None = None  # contents of a mosquitto acl_file
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_config(self) -> None:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            f"listener {self.port} {self.host}",
            "persistence true",
            f"persistence_location {data}/",
            "autosave_interval 1",
            f"log_dest file {self.log_path}",
            "log_type all",
            "max_queued_messages 100000",
        ]
        if os.geteuid() == 0:
            # As root mosquitto drops to user "mosquitto", which cannot read
            # pytest's 0700 tmp dirs; this test instance stays root instead.
            lines.append("user root")
        if self.users:
            if MOSQUITTO_PASSWD is None:
                pytest.skip("mosquitto_passwd not installed (Debian package mosquitto)")
            pwfile = self.workdir / "passwd"
            pwfile.unlink(missing_ok=True)
            for i, (user, password) in enumerate(self.users.items()):
                args = [MOSQUITTO_PASSWD, "-b"] + (["-c"] if i == 0 else []) + [str(pwfile), user, password]
                subprocess.run(args, check=True, capture_output=True)
            pwfile.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            acl_path = self.workdir / "acl"
            acl_path.write_text(self.acl)
            lines.append(f"acl_file {acl_path}")
        if self.tls:
            lines += [
                f"cafile {self.tls['cafile']}",
                f"certfile {self.tls['certfile']}",
                f"keyfile {self.tls['keyfile']}",
            ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        if not Path(MOSQUITTO).exists():
            pytest.skip("mosquitto not installed (Debian package mosquitto)")
        self.write_config()
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(self.host, self.port, proc=self.proc)
        except (RuntimeError, TimeoutError) as exc:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {exc}\n{err}{self.log_tail()}") from None

    def stop(self) -> None:
        """SIGTERM and wait: mosquitto saves its persistence file on the way out."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test paused it
        terminate(self.proc)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is answered (a hung broker)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


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
        mq.start()
        return mq

    yield factory
    for mq in started:
        mq.stop()


@pytest.fixture
def mosquitto(mosquitto_factory) -> Mosquitto:
    """A plain anonymous mosquitto with persistence, on 127.0.0.1:<free port>."""
    return mosquitto_factory()


# --- the real broker process ---------------------------------------------------------


@dataclass
class BrokerProcess:
    """`python -m wgmesh.broker --config <tmp>/broker.yaml` on 127.0.0.1:<free port>."""

    workdir: Path
    config: dict
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    def start(self) -> None:
        config_path = self.workdir / "broker.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        config_path.chmod(0o600)  # may hold the MQTT password
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wgmesh.broker", "--config", str(config_path), "--log-level", "DEBUG"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port("127.0.0.1", self.port, proc=self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"broker did not start: {exc}\n{self.log()}") from None

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc)
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        return http_json(method, self.url + path, body, headers)

    def health(self) -> tuple[int, dict]:
        return http_json("GET", self.url + "/health")

    def wait_healthy(self, want: int = 200, timeout: float = 20.0) -> dict:
        """Poll /health until it answers `want` (a readiness wait, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        status, data = self.health()
        while status != want and time.monotonic() < deadline:
            time.sleep(0.1)
            status, data = self.health()
        assert status == want, f"/health stayed {status} {data}\n{self.log()[-3000:]}"
        return data


def http_json(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """One HTTP request with exactly the given headers (none added, like busybox wget)."""
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        conn.putrequest(method, parsed.path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None and "Content-Length" not in (headers or {}):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else {}
        except ValueError:
            return resp.status, {"raw": raw.decode(errors="replace")}
    finally:
        conn.close()


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
