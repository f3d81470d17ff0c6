"""Ports on loopback and network namespaces."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the kernel just handed out on ``host`` (a tiny race, but no fixed ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    """Return once something accepts TCP on host:port; fail early if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                "%s exited with %s before listening on %s:%d" % (proc.args[0], proc.returncode, host, port)
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nothing listening on %s:%d after %ss" % (host, port, timeout))


def setns(fd: int, what: str = "") -> None:
    """Move the calling thread into the network namespace open as ``fd``."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns %s: %s" % (what or fd, os.strerror(err)))


def enter_netns(netns: str) -> None:
    """Move the calling thread into the named network namespace (/run/netns/<name>)."""
    with open("/run/netns/%s" % netns, "rb") as handle:
        setns(handle.fileno(), netns)


def in_netns(netns: str, func, *args):
    """Run ``func(*args)`` in a thread of its own inside ``netns``; return its result or raise its exception.

    A thread, because setns() moves only the calling thread and the caller's must stay where it is.
    """
    outcome = {}

    def target() -> None:
        try:
            enter_netns(netns)
            outcome["value"] = func(*args)
        except BaseException as exc:  # pylint: disable=broad-exception-caught  # handed to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
