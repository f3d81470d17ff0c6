# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build (or reuse) the Debian 12 VM images the Molecule VM scenarios boot.

debootstrap into a directory, copy rootfs/ over it, then `mkfs.ext4 -d` turns the
directory into a disk image without loop mounts, and `qemu-img convert` makes it a
qcow2 that each VM uses as the backing file of its own overlay. Two variants:

- default: the ext4 file system is the whole disk. The kernel and initrd are copied
  next to it: QEMU boots them directly (-kernel/-initrd), so the image needs no boot
  loader, and its guests always run that kernel.
- bootdisk (bootdisk.py): a GPT disk with an EFI system partition; the guest boots the
  kernel GRUB chooses from its own disk, and has kernel headers, dkms and a compiler.

Each image is cached under ${XDG_CACHE_HOME:-~/.cache}/freifunk-wgmesh/vm/images/, keyed
by a hash of its recipe (recipe_files); a changed recipe builds a new image, an unchanged
one is reused. Usage: python3 build_image.py [--variant NAME ...] [--print-dir]
"""

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import bootdisk

HERE = Path(__file__).resolve().parent
ROOTFS_OVERLAY = HERE / "rootfs"
SUITE = "bookworm"
PACKAGES = [
    "linux-image-amd64",
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "iputils-ping",
    "procps",
    "wireguard-tools",
    "batctl",
    # What the roles (site.yml) and the lab's node install: dpkg under TCG takes
    # minutes per host, debootstrap on the host seconds (docs/lab.md).
    "busybox",
    "nftables",
    "systemd-timesyncd",
    "mosquitto",
    "mosquitto-clients",
    "python3-venv",
]
# Units enabled in the image; units masked to keep boots short and quiet.
ENABLE_UNITS = ["systemd-networkd.service", "ssh.service", "wgmesh-seed.service"]
# Installed for speed, started only by the roles that configure them.
DISABLE_UNITS = ["mosquitto.service"]
MASK_UNITS = [
    "systemd-networkd-wait-online.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "e2scrub_reap.service",
    "systemd-logind.service",  # no logins but Ansible's; saves seconds per boot
]
FREE_SPACE_MIB = 1536  # room for what the scenarios install
KEEP_IMAGES = 2  # other recipe versions kept in the cache (switching branches)
MIRROR_ENV = "WGMESH_DEBIAN_MIRROR"
ROOT_LABEL = "wgmesh-root"
DEFAULT = "default"
# Image variants (a Molecule platform's `image:`), each with the files of its recipe
# besides this file and rootfs/, and the prefix of its cache directory's name.
VARIANTS = {
    DEFAULT: {"recipe": [], "prefix": ""},
    "bootdisk": {"recipe": [Path(bootdisk.__file__).resolve()], "prefix": "bootdisk-"},
}


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(os.environ.get("WGMESH_VM_CACHE", os.path.join(base, "freifunk-wgmesh", "vm")))


def check_variant(variant):
    if variant not in VARIANTS:
        raise ValueError(f"unknown VM image {variant!r}: must be one of {', '.join(VARIANTS)}")
    return variant


def recipe_files(variant=DEFAULT):
    """The files that decide a variant's content: the default's (this file, rootfs/) and the
    variant's own, so changing a variant's file rebuilds only that variant."""
    common = [Path(__file__).resolve(), *sorted(p for p in ROOTFS_OVERLAY.rglob("*") if p.is_file())]
    return common + VARIANTS[check_variant(variant)]["recipe"]


def recipe_hash(variant=DEFAULT):
    """Hash of everything that decides the image's content."""
    digest = hashlib.sha256()
    for path in recipe_files(variant):
        digest.update(str(path.relative_to(HERE)).encode() + b"\0")
        digest.update(oct(path.stat().st_mode & 0o777).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def image_dir(variant=DEFAULT):
    return cache_root() / "images" / (VARIANTS[check_variant(variant)]["prefix"] + recipe_hash(variant))


def variant_of(name):
    """The variant of an image directory's name; None for anything else (a build's leftovers)."""
    for variant, spec in sorted(VARIANTS.items(), key=lambda item: -len(item[1]["prefix"])):
        rest = name.removeprefix(spec["prefix"])
        if name.startswith(spec["prefix"]) and len(rest) == 16 and all(c in "0123456789abcdef" for c in rest):
            return variant
    return None


def log(msg):
    print(f"[vm-image {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def host_mirror():
    """The Debian mirror URI this host's apt uses (no host name lives in the repo)."""
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV]
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in Path(path).read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and SUITE in fields.get("suites", []) and fields.get("uris"):
                return fields["uris"][0]
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        with contextlib.suppress(FileNotFoundError):
            for line in Path(path).read_text().splitlines():
                words = [w for w in line.split() if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                    return words[1]
    sys.exit(
        f"error: found no 'deb ... {SUITE}' source in /etc/apt/sources.list(.d);"
        f" set {MIRROR_ENV} to a Debian mirror URI"
    )


def run(argv, input=None, env=None):
    """Run a build step, streaming its output so a slow step is never silent."""
    log("$ " + " ".join(str(a) for a in argv))
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env} if env else None,
    )
    if input is not None:
        proc.stdin.write(input)
        proc.stdin.close()
    for line in proc.stdout:
        print("    " + line.rstrip(), flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"error: {argv[0]} failed with exit code {proc.returncode}")


def build(target, variant):
    started = time.monotonic()
    work = target.with_name(target.name + f".tmp-{os.getpid()}")
    root = work / "rootfs"
    debs = cache_root() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True)
    packages = PACKAGES + (bootdisk.PACKAGES if variant == "bootdisk" else [])
    try:
        mirror = host_mirror()
        log(f"debootstrap {SUITE} from {mirror} (package cache {debs})")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                f"--cache-dir={debs}",
                SUITE,
                root,
                mirror,
            ]
        )
        log("configuring the root file system")
        shutil.copytree(ROOTFS_OVERLAY, root, symlinks=True, dirs_exist_ok=True)
        efi_binary = None
        if variant == "bootdisk":
            log("setting up GRUB (bootdisk variant)")
            efi_binary = bootdisk.prepare_root(root, work, ROOT_LABEL, run)
        run(["chroot", root, "update-initramfs", "-u", "-k", "all"])
        run(["systemctl", f"--root={root}", "enable", *ENABLE_UNITS])
        run(["systemctl", f"--root={root}", "disable", *DISABLE_UNITS])
        keep = bootdisk.KEEP_UNITS if variant == "bootdisk" else []
        run(["systemctl", f"--root={root}", "mask", *(unit for unit in MASK_UNITS if unit not in keep)])
        # An empty machine-id makes systemd create a new one at each VM's first
        # boot; cloned ids give bridges, VXLAN and batman-adv identical MACs.
        (root / "etc/machine-id").write_text("")
        (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
        for key in root.glob("etc/ssh/ssh_host_*"):
            key.unlink()
        (root / "etc/hostname").write_text("wgmesh-vm\n")
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        (root / "var/cache/apt/archives/partial").mkdir(parents=True)
        for lists in (root / "var/lib/apt/lists").glob("*_*"):
            lists.unlink()
        # The bootdisk variant boots from its disk; its kernel is copied only for vmctl's KVM probe.
        kernel = sorted(root.glob("boot/vmlinuz-*"))[-1]
        shutil.copy(kernel, work / "vmlinuz")
        if variant == DEFAULT:
            initrd = sorted(root.glob("boot/initrd.img-*"))[-1]
            shutil.copy(initrd, work / "initrd.img")

        used = int(subprocess.check_output(["du", "-sm", root]).split()[0])
        size = used + FREE_SPACE_MIB + (bootdisk.EXTRA_FREE_MIB if variant == "bootdisk" else 0)
        log(f"making a {size} MiB ext4 file system from the {used} MiB root tree (mkfs.ext4 -d, no loop mount)")
        raw = work / "disk.raw"
        fs_image = raw if variant == DEFAULT else work / "root.ext4"
        run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", root, fs_image, f"{size}M"])
        shutil.rmtree(root)
        extra = {}
        if variant == "bootdisk":
            log("making the EFI system partition and the GPT disk (mkfs.fat, mtools, sfdisk, dd; no loop device)")
            esp = work / "esp.fat"
            bootdisk.make_esp(esp, efi_binary, run)
            extra["layout"] = bootdisk.assemble(raw, esp, fs_image, size, ROOT_LABEL, run)
            extra["extra_packages"] = bootdisk.PACKAGES
            for path in (esp, fs_image, efi_binary):
                path.unlink()
        log("converting to qcow2")
        run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, work / "disk.qcow2"])
        raw.unlink()
        manifest = {
            "recipe": target.name,
            "variant": variant,
            "suite": SUITE,
            "kernel": kernel.name,
            "packages": PACKAGES,
            **extra,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"built {target} in {time.monotonic() - started:.0f} s")


def prune(keep, variant):
    """Drop old recipe versions of one variant (and leftovers of interrupted builds)."""
    images = cache_root() / "images"
    for stale in images.glob("*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    others = sorted(
        (p for p in images.iterdir() if p != keep and p.is_dir() and variant_of(p.name) == variant),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in others[KEEP_IMAGES:]:
        log(f"removing old image {old}")
        shutil.rmtree(old, ignore_errors=True)


def ensure(variant=DEFAULT):
    """Return the variant's image directory, building it first when the recipe changed."""
    target = image_dir(variant)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(cache_root() / "build.lock", "w") as lock:
        if target.exists():
            log(f"cached image {target}")
            return target
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another image build is running, waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            log(f"no {variant} image for recipe {target.name}, building it")
            prune(target, variant)
            build(target, variant)
        return target


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument(
        "--variant",
        action="append",
        choices=list(VARIANTS),
        help=f"the image to build or reuse (repeat for several; default: {DEFAULT})",
    )
    parser.add_argument("--print-dir", action="store_true", help="print the image directories, build nothing")
    args = parser.parse_args()
    variants = list(dict.fromkeys(args.variant or [DEFAULT]))
    if args.print_dir:
        for variant in variants:
            print(image_dir(variant))
        return
    if os.geteuid() != 0:
        sys.exit("error: building the VM image needs root (debootstrap, file ownership in the image)")
    for variant in variants:
        ensure(variant)


if __name__ == "__main__":
    main()
