"""The kernel-vm scenario: the kernel role on real boots through GRUB (docs/kernel-rollout.md).

After converge the VM runs Debian's cloud-amd64 kernel as GRUB's saved default. side_effect
then tried the image's own kernel twice: once with a gate check that fails (the role booted
back and failed), once with an initramfs that makes it panic (GRUB fell back by itself).
Nothing is mocked: the boots are the VM's, GRUB's environment block is read with grub-editenv.
"""

import os
from pathlib import Path

from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = [f"ansible://{name}?ansible_inventory={INVENTORY.inventory_file}" for name in INVENTORY.get_hosts()]
TEST_DIR = "/var/lib/kernel-vm-test"


def _image_kernel(host):
    return host.file(f"{TEST_DIR}/image-kernel").content_string.strip()


def _running(host):
    return host.check_output("uname -r")


def test_the_gated_kernel_runs_and_is_grubs_default(host):
    running = _running(host)
    assert running.endswith("-cloud-amd64"), running
    saved = dict(line.split("=", 1) for line in host.check_output("grub-editenv list").splitlines() if "=" in line)
    assert running in saved.get("saved_entry", ""), saved
    assert not saved.get("next_entry"), f"a one-time boot is still pending: {saved}"


def test_grub_boots_its_saved_default_with_panic_set(host):
    dropin = host.file("/etc/default/grub.d/wgmesh-kernel.cfg").content_string
    assert "GRUB_DEFAULT=saved" in dropin
    assert "panic=10" in host.file("/proc/cmdline").content_string


def test_the_kernel_package_is_held(host):
    held = host.check_output("apt-mark showhold").split()
    assert f"linux-image-{_running(host)}" in held, held


def test_every_boot_in_order(host):
    """image kernel (first boot), cloud (passed the gate), image kernel (failed the gate),
    cloud (the role's rollback), cloud (GRUB's fallback after the panic, which never reached
    userspace and so logged nothing)."""
    image, cloud = _image_kernel(host), _running(host)
    boots = host.file(f"{TEST_DIR}/boots.log").content_string.split()
    assert boots == [image, cloud, image, cloud, cloud], boots


def test_the_failed_gate_says_why(host):
    message = host.file(f"{TEST_DIR}/gate-failed.msg").content_string
    assert f"{_image_kernel(host)} was not kept" in message, message
    assert f"the host runs {_running(host)}" in message, message
    assert "systemctl is-active kernel-vm-no-such.service` exited 3" in message, message


def test_the_panicking_kernel_fell_back_by_itself(host):
    message = host.file(f"{TEST_DIR}/panic-fallback.msg").content_string
    assert f"{_image_kernel(host)} did not come up" in message, message
    assert f"GRUB booted {_running(host)}" in message, message


def test_the_console_shows_the_panic():
    """The VM's serial console, kept on the controller by the VM tier (molecule/shared/vm)."""
    consoles = list(Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]).glob("vms/*/console.log"))
    assert consoles, "no console log"
    text = consoles[0].read_text(errors="replace")
    assert "Kernel panic - not syncing" in text
    # the panic came last but one: the cloud kernel booted after it
    assert "cloud-amd64" in text[text.rindex("Kernel panic - not syncing") :]
