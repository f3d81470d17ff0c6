"""The kernel-feature probes skip with a reason when a probe tool is missing; they never crash.

A fresh Debian 12 machine without kmod crashed test_worker_kernel.py with
FileNotFoundError: 'modprobe'. Here the probe runs with a PATH that has the other tools
(stubs) but no modprobe. Simulated, because they are the host's and not the probe's: root
(os.geteuid) and the absence of loaded modules (/sys/module/<name>).
"""

import os

import pytest

from tests.integration.services import test_worker_backends, test_worker_kernel

VM_TIER = "runs in the VM tier: molecule/worker-kernel-vm"


@pytest.fixture
def host_without_modprobe(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "wg", "bridge"):
        stub = bin_dir / tool
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: not str(p).startswith("/sys/module/") and real_isdir(p))


@pytest.mark.usefixtures("host_without_modprobe")
@pytest.mark.parametrize(
    "probe",
    [test_worker_kernel._missing_requirement, test_worker_backends._kernel_wireguard_available],  # pylint: disable=protected-access
    ids=["test_worker_kernel", "test_worker_backends"],
)
def test_missing_modprobe_is_a_skip_reason_naming_the_vm_tier(probe):
    reason = probe()
    assert reason is not None
    assert "modprobe" in reason
    assert "kmod" in reason
    assert VM_TIER in reason
