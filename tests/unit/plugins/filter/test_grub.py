"""grub_entries: the boot entries of a grub.cfg as grub-mkconfig writes it, with the path
grub-reboot and grub-set-default take (docs/kernel-rollout.md)."""

from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.filter.grub import grub_entries

CFGS = Path(__file__).parent / "grub_cfgs"
UUID = "6b3f1c2e-0d4a-4c1e-9f7a-1b2c3d4e5f60"

# Shaped like Debian 12's grub-mkconfig output (10_linux): a simple entry for the newest
# kernel, then a submenu with a normal and a recovery entry per kernel.
WITH_SUBMENU = (CFGS / "debian12-submenu.cfg").read_text()

# GRUB_DISABLE_SUBMENU=y, as the kernel role configures: every kernel at the top level.
FLAT = (CFGS / "flat.cfg").read_text()


def test_entries_in_a_submenu_get_the_submenu_in_their_path():
    entries = grub_entries(WITH_SUBMENU)
    by_path = {entry["path"]: entry for entry in entries}
    advanced = f"gnulinux-advanced-{UUID}>gnulinux-6.1.0-27-amd64-advanced-{UUID}"
    assert by_path[advanced]["release"] == "6.1.0-27-amd64"
    assert by_path[advanced]["title"] == "Debian GNU/Linux, with Linux 6.1.0-27-amd64"
    assert by_path[advanced]["recovery"] is False
    assert by_path[f"gnulinux-simple-{UUID}"]["release"] == "6.1.0-28-cloud-amd64"
    assert len(entries) == 4


def test_recovery_entries_are_marked():
    recovery = [entry for entry in grub_entries(WITH_SUBMENU) if entry["recovery"]]
    assert [entry["release"] for entry in recovery] == ["6.1.0-28-cloud-amd64"]


def test_flat_menu_and_double_quotes():
    entries = grub_entries(FLAT)
    assert [entry["path"] for entry in entries] == [
        f"gnulinux-6.1.0-27-amd64-advanced-{UUID}",
        f"gnulinux-6.1.119-wgmesh.1a2b3c4d-advanced-{UUID}",
    ]
    assert entries[1]["release"] == "6.1.119-wgmesh.1a2b3c4d"


def test_an_entry_without_an_id_is_addressed_by_its_title():
    cfg = "menuentry 'Hand made' {\n\tlinux /boot/vmlinuz-6.1.0-9-amd64 root=/dev/vda2\n}\n"
    assert grub_entries(cfg) == [
        {"title": "Hand made", "id": "", "path": "Hand made", "release": "6.1.0-9-amd64", "recovery": False}
    ]


def test_an_entry_that_boots_no_linux_has_no_release():
    cfg = "menuentry 'UEFI Firmware Settings' $menuentry_id_option 'uefi-firmware' {\n\tfwsetup\n}\n"
    assert grub_entries(cfg)[0]["release"] == ""


@pytest.mark.parametrize("bad", [None, 42])
def test_not_text_fails_clearly(bad):
    with pytest.raises(AnsibleFilterError, match=r"grub\.cfg"):
        grub_entries(bad)


def test_unbalanced_braces_fail_clearly():
    with pytest.raises(AnsibleFilterError, match="unbalanced"):
        grub_entries("submenu 'x' {\nmenuentry 'y' {\n}\n")
