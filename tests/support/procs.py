"""Run commands, stop processes, wait for a state, measure CPU time."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def run(*argv: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``argv`` (no shell), capturing text output; with ``check``, fail naming the command and its stderr."""
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (rc=%d): %s" % (" ".join(argv[:4]), proc.returncode, proc.stderr.strip()))
    return proc


def terminate(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds; always reaps it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something true, and return that.

    For eventual states: the timeout only bounds a hang, it measures nothing.
    Raises TimeoutError naming ``what`` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %ss waiting for %s (last value: %r)" % (timeout, what, last))
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: a cost that background load does not distort."""
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def out(*argv: str, input: str | None = None, check: bool = True) -> str:
    """``run(...).stdout``: for the many callers that want only the command's text."""
    return run(*argv, input=input, check=check).stdout


class Unavailable(Exception):
    """A tool or privilege the helper needs is missing; the message says which (tests skip on it)."""
