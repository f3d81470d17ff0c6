"""Check a mosquitto configuration by starting a throwaway mosquitto with it.

mosquitto 2.0 has no config test mode. This starts a second instance with the
candidate configuration on spare loopback ports, with its own persistence
directory and no pid file, waits until it reports running (valid) or exits
(invalid: its own message is printed), then stops it. The live instance and
its data are never touched.

Usage (as an Ansible `validate:` command, %s = the candidate file):
  python3 mosquitto_config_check.py --conf %s
  python3 mosquitto_config_check.py --acl-file %s       # with the live config
  python3 mosquitto_config_check.py --password-file %s
"""

from __future__ import annotations

import argparse
import os
import pwd
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

LIVE_CONF = "/etc/mosquitto/mosquitto.conf"
# Options that would touch the live instance's ports, files or logs.
DROPPED = {"pid_file", "log_dest", "log_type", "persistence_location", "include_dir", "bind_address", "bind_interface"}
RUNNING = b" running\n"


def spare_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def throwaway_config(lines, workdir, overrides):
    """The candidate's lines, moved onto spare loopback ports and into workdir."""
    out, listeners = [], 0
    for line in lines:
        words = line.split()
        option = words[0] if words and not words[0].startswith("#") else ""
        if option in DROPPED or option in overrides:
            continue
        if option in ("listener", "port"):
            line = f"listener {spare_port()} 127.0.0.1"
            listeners += 1
        out.append(line.rstrip("\n"))
    if not listeners:
        out.append(f"listener {spare_port()} 127.0.0.1")
    out += [f"{option} {path}" for option, path in overrides.items()]
    out += [f"persistence_location {workdir}/", "log_dest stderr", "log_type all"]
    return "\n".join(out) + "\n"


def run(mosquitto, conf_path, timeout):
    """(ok, output): ok once mosquitto says it is running; its output either way."""
    proc = subprocess.Popen([mosquitto, "-c", conf_path], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    output, deadline = b"", time.monotonic() + timeout
    try:
        # mosquitto logs "running" after it opened its listeners and loaded
        # the password and ACL files; an error ends it before that.
        while RUNNING not in output:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([proc.stderr], [], [], left)[0]:
                return False, output.decode(errors="replace") + f"mosquitto did not report running within {timeout} s\n"
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                proc.wait()
                return False, output.decode(errors="replace") + f"mosquitto exited with status {proc.returncode}\n"
            output += chunk
        return True, output.decode(errors="replace")
    finally:
        # SIGKILL: its data is thrown away anyway, and mosquitto 2.0.11 can
        # miss a SIGTERM that arrives just after it reports running.
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default=LIVE_CONF, help="candidate main config (default: the live one)")
    parser.add_argument("--acl-file", help="candidate ACL file, checked with --conf")
    parser.add_argument("--password-file", help="candidate password file, checked with --conf")
    parser.add_argument("--user", default="mosquitto", help="user mosquitto drops privileges to")
    parser.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args(argv)
    try:
        with open(args.conf, encoding="utf-8") as handle:
            lines = handle.readlines()
    except FileNotFoundError:
        lines = []  # a fresh host checks a new ACL or password file alone
    with tempfile.TemporaryDirectory(prefix="wgmesh-mosquitto-check.") as workdir:
        overrides = {}
        # mosquitto reads these after dropping privileges: give it copies it can read.
        for option, path in (("acl_file", args.acl_file), ("password_file", args.password_file)):
            if path:
                overrides[option] = shutil.copy(path, os.path.join(workdir, option))
        try:
            account = pwd.getpwnam(args.user)
            for path in [workdir, *overrides.values()]:
                os.chown(path, account.pw_uid, account.pw_gid)
        except KeyError:
            pass  # no such user: mosquitto runs as whoever started it
        conf_path = os.path.join(workdir, "mosquitto.conf")
        with open(conf_path, "w", encoding="utf-8") as handle:
            handle.write(throwaway_config(lines, workdir, overrides))
        ok, output = run(args.mosquitto, conf_path, args.timeout)
    if not ok:
        sys.stderr.write(f"mosquitto refuses this configuration:\n{output}")
        sys.exit(1)


if __name__ == "__main__":
    main()
