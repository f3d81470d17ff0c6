"""A real mosquitto 2.x on 127.0.0.1 at a free port, restartable with the same persistence.

Its config, persistence directory and log live under the given work directory; variants
take a password file (made with mosquitto_passwd), an ACL file or a TLS listener. Used by
the services tests (through conftest fixtures) and by bench/. Stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.net import wait_for_port
from tests.support.procs import Unavailable, terminate

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
                raise Unavailable("mosquitto_passwd not installed (Debian package mosquitto)")
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
            raise Unavailable("mosquitto not installed (Debian package mosquitto)")
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
