"""The batman-dkms-vm scenario after converge: the loaded batman-adv is the DKMS build.

Each test runs once per VM (testinfra over SSH); nothing is mocked. bdvm1 built from the
tarball, bdvm2 from the git ref, both with patch 0001 (version string 2022.3-wgtest1).
"""

import json
import os
import re
import sys
from pathlib import Path

import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

# The repository root: tests.support is shared by the tests, bench/ and Molecule.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.support.procs import wait_until

INVENTORY = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
VMS = INVENTORY.get_hosts("all")
testinfra_hosts = [f"ansible://{name}?ansible_inventory={INVENTORY.inventory_file}" for name in VMS]

PATCHED = "2022.3-wgtest1"
VERSION_RE = re.compile(r"^" + re.escape(PATCHED) + r"\+wgmesh\.[0-9a-f]{12}$")
SETTLE_SECONDS = 120


def _loaded(host):
    return host.file("/sys/module/batman_adv/version").content_string.strip()


def _kernels(host):
    """Every kernel with modules on the VM (the role builds for each installed one)."""
    return host.check_output("ls /lib/modules").split()


def test_the_loaded_module_is_the_patched_dkms_build(host):
    version = _loaded(host)
    assert VERSION_RE.match(version), f"/sys/module/batman_adv/version is {version!r}, not {PATCHED}+wgmesh.<fp>"
    assert host.check_output("modinfo -n batman_adv").startswith(
        f"/lib/modules/{host.check_output('uname -r')}/updates/dkms/"
    )
    srcversion = host.file("/sys/module/batman_adv/srcversion").content_string.strip()
    assert srcversion == host.check_output("modinfo -F srcversion batman_adv")


def test_tarball_and_git_gave_the_same_build():
    versions = {_loaded(testinfra.get_host(spec)) for spec in testinfra_hosts}
    assert len(versions) == 1, f"the VMs loaded different builds: {versions}"


def test_dkms_holds_one_version_installed_for_every_kernel(host):
    version = _loaded(host)
    lines = host.check_output("dkms status -m batman-adv").splitlines()
    assert {line.split(",")[0] for line in lines} == {f"batman-adv/{version}"}
    installed = {line.split(", ")[1] for line in lines if line.rstrip().endswith(": installed")}
    assert installed == set(_kernels(host))
    for kernel in _kernels(host):
        assert "/updates/dkms/" in host.check_output(f"modinfo -k {kernel} -n batman_adv")


def test_batctl_is_the_pinned_version_and_talks_to_the_module(host):
    out = host.check_output("batctl -v")
    assert out.startswith("batctl debian-2023.0-1 ")
    assert f"[batman-adv: {_loaded(host)}]" in out


def test_the_other_vm_is_a_batman_adv_neighbour_over_vxlan(host):
    assert json.loads(host.check_output("ip -j -d link show vx-test"))[0].get("master") == "bat-test"

    def neighbour():
        lines = host.run("batctl meshif bat-test neighbors -H").stdout.splitlines()
        return [line for line in lines if "vx-test" in line]

    assert wait_until(neighbour, timeout=SETTLE_SECONDS, interval=2, what="a batman-adv neighbour on vx-test")


def test_nothing_says_a_reboot_is_needed(host):
    assert (
        not host.file("/run/reboot-required.pkgs").exists
        or "batman-adv-dkms" not in host.file("/run/reboot-required.pkgs").content_string
    )
