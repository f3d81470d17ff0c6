"""tests.support: the helpers tests, bench/ and Molecule share, against real processes and sockets."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from ansible_collections.freifunk.wgmesh.plugins.module_utils._wgkey import key_problem
from tests.support.keys import new_key
from tests.support.net import free_port, in_netns, wait_for_port
from tests.support.procs import cpu_seconds, out, run, terminate, wait_until


def test_free_port_can_be_bound_and_waited_for():
    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        wait_for_port("127.0.0.1", port, timeout=5)


def test_wait_for_port_fails_early_when_the_process_exits():
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="exited with 3"):
        wait_for_port("127.0.0.1", free_port(), timeout=60, proc=proc)


def test_run_names_the_failing_command_and_its_stderr():
    assert run(sys.executable, "-c", "print('hi')").stdout == "hi\n"
    with pytest.raises(RuntimeError, match=r"failed \(rc=2\): boom"):
        run(sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(2)")
    assert run(sys.executable, "-c", "raise SystemExit(2)", check=False).returncode == 2


def test_terminate_kills_a_process_that_ignores_sigterm():
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    proc.stdout.readline()  # SIGTERM is ignored from here on
    terminate(proc, timeout=0.5)
    assert proc.returncode == -signal.SIGKILL
    proc.stdout.close()


def test_wait_until_returns_the_value_or_names_what_it_waited_for():
    values = iter([0, None, "ready"])
    assert wait_until(lambda: next(values), interval=0) == "ready"
    with pytest.raises(TimeoutError, match=r"waiting for the impossible \(last value: False\)"):
        wait_until(lambda: False, timeout=0, what="the impossible")


def test_cpu_seconds_counts_a_busy_child():
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        wait_until(lambda: cpu_seconds(proc.pid) > 0.05, timeout=60, what="CPU time to be counted")
    finally:
        terminate(proc)


def test_new_key_is_a_fresh_wireguard_key():
    keys = {new_key() for dummy in range(20)}
    assert len(keys) == 20
    assert all(key_problem(key) is None for key in keys)


def test_in_netns_runs_in_the_namespace_and_leaves_the_caller_where_it_was(netns):
    def inode():
        return os.stat("/proc/thread-self/ns/net").st_ino

    before = inode()
    inside = in_netns(netns, inode)
    assert inside == os.stat("/run/netns/%s" % netns).st_ino != before
    assert inode() == before
    with pytest.raises(ZeroDivisionError):
        in_netns(netns, lambda: 1 / 0)


def test_out_is_the_commands_text_and_fails_like_run():
    assert out(sys.executable, "-c", "print('hi')") == "hi\n"
    assert out(sys.executable, "-c", "import sys; print(sys.stdin.read().upper())", input="key") == "KEY\n"
    with pytest.raises(RuntimeError, match=r"failed \(rc=3\)"):
        out(sys.executable, "-c", "raise SystemExit(3)")
