# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `bootdisk` image variant: a VM that boots the kernel GRUB chooses from its own disk.

The default image is booted with QEMU's -kernel/-initrd, so its guests always run the
kernel copied out at build time. This variant is for roles that install kernels or build
modules for them (DKMS): it has the kernel headers, dkms, gcc and make, and GRUB's tools
(update-grub, grub-reboot, grub-set-default, grub-editenv) work in the guest as on a
Debian host. It boots through UEFI: QEMU's OVMF firmware loads GRUB from the EFI system
partition at the removable-media path, GRUB finds the root file system by its label and
reads /boot/grub/grub.cfg there, as grub-install would have set it up.

Everything is assembled from files, without loop devices or mounts: an ESP image made by
mkfs.fat and filled with mtools, the root file system by `mkfs.ext4 -d` (build_image.py),
a GPT written by sfdisk into a plain file, and both file systems copied into it with dd.
grub-mkconfig cannot probe devices in a chroot, so the first grub.cfg is written here;
the guest's own `update-grub` replaces it (with the settings of /etc/default/grub below).

This file is part of the variant's recipe hash only: changing it rebuilds the bootdisk
image, not the default one (build_image.recipe_files).
"""

import os
import shutil
from pathlib import Path

# The kernel command line of every VM of the tier (besides root=): vmctl.py passes it with
# -append to the default image's kernel; in this variant GRUB's config carries it.
KERNEL_ARGS = "console=ttyS0 net.ifnames=0 loglevel=4 panic=-1"
# What the variant adds to build_image.PACKAGES. The headers of the image's own kernel are
# installed at build time: the archive drops an ABI's headers when the next one comes.
PACKAGES = [
    "linux-headers-amd64",
    "dkms",
    "gcc",
    "make",
    "libc6-dev",
    # GRUB's EFI modules and tools without grub-efi-amd64, whose postinst would run
    # grub-install (it cannot find the boot disk in a chroot). grub2-common brings
    # update-grub, grub-reboot, grub-set-default and the kernel hook that runs update-grub.
    "grub-efi-amd64-bin",
    "grub2-common",
]
EXTRA_FREE_MIB = 2048  # room for more kernels, their headers and DKMS builds
# Units the default image masks that this variant keeps: `shutdown -r` (what Ansible's reboot
# module runs) schedules the reboot through logind, and fails when it is masked.
KEEP_UNITS = ["systemd-logind.service"]
GRUB_TARGET = "x86_64-efi"
# Built into the EFI binary: what finds and reads the root file system and GRUB's normal
# mode. Everything else grub.cfg needs GRUB loads from /boot/grub/x86_64-efi/.
GRUB_MODULES = [
    "part_gpt",
    "fat",
    "ext2",
    "search",
    "search_label",
    "search_fs_uuid",
    "normal",
    "configfile",
    "echo",
    "test",
    "loadenv",
    "linux",
    "gzio",
    "efi_gop",
    "all_video",
]
EFI_BINARY = "EFI/BOOT/BOOTX64.EFI"  # the removable-media path: no NVRAM entry needed
CHROOT_SCRATCH = "/wgmesh-build"  # in the image tree while grub-mkimage runs there, then removed
ESP_LABEL = "WGMESH-ESP"
ESP_MIB = 64
SECTOR = 512
MIB_SECTORS = 1024 * 1024 // SECTOR
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"  # EFI system partition
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"  # Linux file system


def layout(root_mib, esp_mib=ESP_MIB):
    """Where the partitions go, in 512-byte sectors: 1 MiB before the ESP (protective MBR,
    GPT header and entries), the root right after it, 1 MiB at the end (the backup GPT).
    Everything is MiB-aligned, so dd can place each file system with bs=1M."""
    esp_start = MIB_SECTORS
    root_start = esp_start + esp_mib * MIB_SECTORS
    return {
        "esp_start": esp_start,
        "esp_sectors": esp_mib * MIB_SECTORS,
        "root_start": root_start,
        "root_sectors": root_mib * MIB_SECTORS,
        "disk_mib": 1 + esp_mib + root_mib + 1,
    }


def sfdisk_script(parts, root_label):
    """The partition table for `sfdisk` (input format of sfdisk(8))."""
    return (
        "label: gpt\n"
        "unit: sectors\n"
        f'start={parts["esp_start"]}, size={parts["esp_sectors"]}, type={ESP_TYPE}, name="EFI system partition"\n'
        f'start={parts["root_start"]}, size={parts["root_sectors"]}, type={LINUX_TYPE}, name="{root_label}"\n'
    )


def early_config(root_label):
    """Built into BOOTX64.EFI: find the root file system by label; GRUB then enters its
    normal mode, which reads $prefix/grub.cfg (as grub-install's early config does)."""
    return f"search --no-floppy --label --set=root {root_label}\nset prefix=($root)/boot/grub\n"


def grub_cfg(root_label):
    """The first /boot/grub/grub.cfg, until the guest runs update-grub: the kernel and initrd
    Debian's /vmlinuz and /initrd.img point to, and grub-reboot's next_entry honoured as
    update-grub's config does (GRUB_DEFAULT=0 otherwise)."""
    return f"""\
# Written by build_image.py (bootdisk variant) for the first boot. update-grub in the
# guest replaces it from /etc/default/grub and /etc/grub.d/.
set timeout=0
if [ -s $prefix/grubenv ]; then
  load_env
fi
if [ "${{next_entry}}" ]; then
  set default="${{next_entry}}"
  set next_entry=
  save_env next_entry
else
  set default=0
fi
menuentry 'Debian GNU/Linux' --id wgmesh-first-boot {{
  insmod part_gpt
  insmod ext2
  search --no-floppy --label --set=root {root_label}
  linux /vmlinuz root=LABEL={root_label} ro {KERNEL_ARGS}
  initrd /initrd.img
}}
"""


# Lines of Debian's /etc/default/grub (grub2-common's /usr/share/grub/default/grub) this
# variant sets; each must be found once, so a changed template fails the build.
DEFAULT_GRUB = {
    "GRUB_TIMEOUT": "0",
    "GRUB_CMDLINE_LINUX_DEFAULT": '""',
    "GRUB_CMDLINE_LINUX": f'"{KERNEL_ARGS}"',
    # OVMF mirrors its console to the serial port, which the VM's log records.
    "GRUB_TERMINAL": "console",
}


def default_grub(template):
    """Debian's /etc/default/grub with the settings above (a commented example line counts)."""
    lines = template.splitlines()
    for key, value in DEFAULT_GRUB.items():
        hits = [i for i, line in enumerate(lines) if line.lstrip("#").startswith(f"{key}=")]
        if len(hits) != 1:
            raise ValueError(f"expected one {key}= line in Debian's /etc/default/grub template, found {len(hits)}")
        lines[hits[0]] = f"{key}={value}"
    return "\n".join(["# Set for the wgmesh test VMs (bootdisk image): timeout, serial console.", *lines]) + "\n"


def fstab(root_label):
    # The ESP as on a Debian UEFI host, so grub-install works in the guest; nofail, and no
    # fsck (passno 0): the guest has no fsck.vfat, and a boot does not wait for it.
    return (
        f"LABEL={root_label} / ext4 defaults,errors=remount-ro 0 1\n"
        f"LABEL={ESP_LABEL} /boot/efi vfat umask=0077,nofail 0 0\n"
    )


def exists_in(root, path):
    """Whether `path` exists inside the tree `root`, its symlinks followed as in a chroot:
    /lib/modules/<kernel>/build points to /usr/src/linux-headers-<kernel>, which on the
    host is some other file or none."""
    current, parts = root, list(Path(path.lstrip("/")).parts)
    for dummy in range(1000):
        if not parts:
            return current.exists()
        candidate = current / parts.pop(0)
        if candidate.is_symlink():
            target = os.readlink(candidate)
            current = root if target.startswith("/") else current
            parts = list(Path(target.lstrip("/")).parts) + parts
        else:
            current = candidate
    return False  # a symlink loop


def prepare_root(root, work, root_label, run):
    """Set up GRUB in the root tree; return the EFI binary for the ESP (in `work`)."""
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*"))
    missing = [k for k in kernels if not exists_in(root, f"/lib/modules/{k}/build/Makefile")]
    if not kernels or missing:
        raise SystemExit(
            f"error: bootdisk image: no kernel headers for {missing or 'any kernel'} (linux-headers-amd64)"
        )
    for link in ("/vmlinuz", "/initrd.img"):
        if not exists_in(root, link):
            raise SystemExit(f"error: bootdisk image: Debian's {link} symlink is missing in the image")
    template = root / "usr/share/grub/default/grub"
    (root / "etc/default/grub").write_text(default_grub(template.read_text()))
    (root / "etc/fstab").write_text(fstab(root_label))
    (root / "boot/efi").mkdir(parents=True, exist_ok=True)
    grub = root / "boot/grub"
    grub.mkdir(parents=True, exist_ok=True)
    (grub / "grub.cfg").write_text(grub_cfg(root_label))
    run(["chroot", root, "grub-script-check", "/boot/grub/grub.cfg"])  # GRUB's own parser
    run(["chroot", root, "grub-editenv", "/boot/grub/grubenv", "create"])
    # What grub-install copies: the modules grub.cfg's insmod lines load, and their lists.
    modules = root / "usr/lib/grub" / GRUB_TARGET
    (grub / GRUB_TARGET).mkdir(exist_ok=True)
    for path in [*modules.glob("*.mod"), *modules.glob("*.lst")]:
        shutil.copy(path, grub / GRUB_TARGET / path.name)
    scratch = root / CHROOT_SCRATCH.lstrip("/")
    scratch.mkdir()
    (scratch / "early.cfg").write_text(early_config(root_label))
    argv = ["chroot", root, "grub-mkimage", "-O", GRUB_TARGET, "-o", f"{CHROOT_SCRATCH}/BOOTX64.EFI"]
    run([*argv, "-p", "/boot/grub", "-c", f"{CHROOT_SCRATCH}/early.cfg", *GRUB_MODULES])
    efi = Path(shutil.move(scratch / "BOOTX64.EFI", work / "BOOTX64.EFI"))
    shutil.rmtree(scratch)
    return efi


def make_esp(path, efi_binary, run, esp_mib=ESP_MIB):
    """A FAT32 ESP image with GRUB at the removable-media path, filled with mtools."""
    run(["mkfs.fat", "-F", "32", "-n", ESP_LABEL, "-C", path, str(esp_mib * 1024)])
    env = {"MTOOLS_SKIP_CHECK": "1"}  # an image file has no floppy geometry to check
    run(["mmd", "-i", path, "::/EFI", "::/EFI/BOOT"], env=env)
    run(["mcopy", "-i", path, efi_binary, f"::/{EFI_BINARY}"], env=env)


def assemble(disk, esp_image, root_image, root_mib, root_label, run):
    """The GPT disk: the table by sfdisk on a sparse file, the file systems copied in by dd
    (sparse: zero blocks stay holes). Returns the layout."""
    parts = layout(root_mib)
    with open(disk, "wb") as f:
        f.truncate(parts["disk_mib"] * 1024 * 1024)
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk], input=sfdisk_script(parts, root_label))
    for image, start in ((esp_image, parts["esp_start"]), (root_image, parts["root_start"])):
        seek = start // MIB_SECTORS
        run(["dd", f"if={image}", f"of={disk}", "bs=1M", f"seek={seek}", "conv=notrunc,sparse", "status=none"])
    return parts
