"""The real broker process (``python -m wgmesh.broker``) on 127.0.0.1 at a free port, and plain HTTP to it.

Used by the services tests (the ``broker_factory`` fixture) and by bench/. Stopped by PID.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.net import wait_for_port
from tests.support.procs import terminate


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


def exchange(broker: BrokerProcess, path: str, domain: str, key: str, headers: dict | None = None) -> tuple[int, dict]:
    """POST one key exchange (v1 or v2 ``path``) as a node does."""
    body = json.dumps({"domain": domain, "public_key": key}).encode()
    return broker.request("POST", path, body, headers)
