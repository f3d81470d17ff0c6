"""A wireguard-go interface in a network namespace of its own, for tests and bench/.

wireguard-go's control sockets (/var/run/wireguard/<if>.sock) are global to the host, so
every interface gets a unique name; the namespace is named ``h2-<same suffix>``. The
daemon runs in the foreground (WG_PROCESS_FOREGROUND=1) so we own its PID and stop it by
that PID; ``close()`` removes the namespace and socket even after a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from tests.support.procs import Unavailable, run, terminate

SOCKET_DIR = Path("/var/run/wireguard")
__all__ = ["Unavailable", "WgNetns"]  # Unavailable: its callers import it from here


class WgNetns:
    def __init__(self, prefix: str = "h2"):
        suffix = "%s%s" % (os.getpid() % 10000, secrets.token_hex(2))
        self.netns = "%s-%s" % (prefix, suffix)
        self.ifname = ("%s%s" % (prefix, suffix))[:15]
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self, log_dir: Path) -> WgNetns:
        for tool in ("ip", "wg", "wireguard-go"):
            if shutil.which(tool) is None:
                raise Unavailable("%s is not installed (Debian: iproute2, wireguard-tools, wireguard-go)" % tool)
        if os.geteuid() != 0:
            raise Unavailable("network namespaces and TUN devices need root")
        try:
            run("ip", "netns", "add", self.netns)
            run("ip", "-n", self.netns, "link", "set", "lo", "up")
        except RuntimeError as exc:
            self.close()
            raise Unavailable("cannot create network namespace: %s" % exc) from None
        self.log_path = log_dir / ("wireguard-go-%s.log" % self.ifname)
        env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error")
        with self.log_path.open("w") as log:
            # `ip netns exec` execs wireguard-go, so this PID is the daemon's own.
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, "wireguard-go", self.ifname],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                reason = self.log_path.read_text().strip() or "exit code %d" % self.process.returncode
                self.close()
                raise Unavailable("wireguard-go did not start: %s" % reason)
            if run("wg", "show", self.ifname, "dump", check=False).returncode == 0:
                return self
            time.sleep(0.05)
        self.close()
        raise Unavailable("wireguard-go started but %s did not answer `wg show` within 10 s" % self.ifname)

    def set_identity(self, private_key: str, listen_port: int | str, key_dir: Path) -> None:
        """Give the interface a private key (through a 0600 file, never argv) and a listen port."""
        key_file = key_dir / ("%s.key" % self.ifname)
        key_file.touch(mode=0o600)
        key_file.write_text(private_key.strip() + "\n")
        self.wg("set", self.ifname, "private-key", str(key_file), "listen-port", str(listen_port))

    def wg(self, *args: str, input: str | None = None) -> str:
        return run("wg", *args, input=input).stdout

    def dump(self) -> tuple[list[str], dict[str, list[str]]]:
        """(interface fields, {public key: peer fields}) from `wg show <if> dump`."""
        lines = self.wg("show", self.ifname, "dump").splitlines()
        return lines[0].split("\t"), {line.split("\t")[0]: line.split("\t") for line in lines[1:]}

    def peers(self) -> dict[str, list[str]]:
        return self.dump()[1]

    def close(self) -> None:
        if self.process is not None:
            terminate(self.process)
        self.process = None
        sock = SOCKET_DIR / ("%s.sock" % self.ifname)
        if sock.exists():
            sock.unlink()
        run("ip", "netns", "delete", self.netns, check=False)

    def __enter__(self) -> WgNetns:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
