# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build (or reuse) the Debian 12 VM image the Molecule VM scenarios boot.

debootstrap into a directory, copy rootfs/ over it, then `mkfs.ext4 -d` turns the
directory into a disk image without loop mounts, and `qemu-img convert` makes it a
qcow2 that each VM uses as the backing file of its own overlay. The kernel and
initrd are copied next to it: QEMU boots them directly (-kernel/-initrd), so the
image needs no boot loader.

The image is cached under ${XDG_CACHE_HOME:-~/.cache}/freifunk-wgmesh/vm/, keyed by
a hash of this recipe (this file and rootfs/); a changed recipe builds a new image,
an unchanged one is reused. Usage: python3 build_image.py [--print-dir]
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


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(os.environ.get("WGMESH_VM_CACHE", os.path.join(base, "freifunk-wgmesh", "vm")))


def recipe_hash():
    """Hash of everything that decides the image's content."""
    digest = hashlib.sha256()
    files = [Path(__file__).resolve(), *sorted(p for p in ROOTFS_OVERLAY.rglob("*") if p.is_file())]
    for path in files:
        digest.update(str(path.relative_to(HERE)).encode() + b"\0")
        digest.update(oct(path.stat().st_mode & 0o777).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def image_dir():
    return cache_root() / "images" / recipe_hash()


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


def run(argv, **kwargs):
    """Run a build step, streaming its output so a slow step is never silent."""
    log("$ " + " ".join(str(a) for a in argv))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    for line in proc.stdout:
        print("    " + line.rstrip(), flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"error: {argv[0]} failed with exit code {proc.returncode}")


def build(target):
    started = time.monotonic()
    work = target.with_name(target.name + f".tmp-{os.getpid()}")
    root = work / "rootfs"
    debs = cache_root() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True)
    try:
        mirror = host_mirror()
        log(f"debootstrap {SUITE} from {mirror} (package cache {debs})")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                f"--cache-dir={debs}",
                SUITE,
                root,
                mirror,
            ]
        )
        log("configuring the root file system")
        shutil.copytree(ROOTFS_OVERLAY, root, symlinks=True, dirs_exist_ok=True)
        run(["chroot", root, "update-initramfs", "-u", "-k", "all"])
        run(["systemctl", f"--root={root}", "enable", *ENABLE_UNITS])
        run(["systemctl", f"--root={root}", "disable", *DISABLE_UNITS])
        run(["systemctl", f"--root={root}", "mask", *MASK_UNITS])
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
        kernel = sorted(root.glob("boot/vmlinuz-*"))[-1]
        initrd = sorted(root.glob("boot/initrd.img-*"))[-1]
        shutil.copy(kernel, work / "vmlinuz")
        shutil.copy(initrd, work / "initrd.img")

        used = int(subprocess.check_output(["du", "-sm", root]).split()[0])
        size = used + FREE_SPACE_MIB
        log(f"making a {size} MiB ext4 disk from the {used} MiB root file system (mkfs.ext4 -d, no loop mount)")
        raw = work / "disk.raw"
        run(["mkfs.ext4", "-q", "-F", "-L", "wgmesh-root", "-d", root, raw, f"{size}M"])
        log("converting to qcow2")
        run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, work / "disk.qcow2"])
        raw.unlink()
        shutil.rmtree(root)
        manifest = {
            "recipe": target.name,
            "suite": SUITE,
            "kernel": kernel.name,
            "packages": PACKAGES,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"built {target} in {time.monotonic() - started:.0f} s")


def prune(keep):
    """Drop old recipe versions (and leftovers of interrupted builds)."""
    images = cache_root() / "images"
    for stale in images.glob("*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    others = sorted(
        (p for p in images.iterdir() if p != keep and p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for old in others[KEEP_IMAGES:]:
        log(f"removing old image {old}")
        shutil.rmtree(old, ignore_errors=True)


def ensure():
    """Return the image directory, building it first when the recipe changed."""
    target = image_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(cache_root() / "build.lock", "w") as lock:
        if target.exists():
            log(f"cached image {target}")
            return target
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another build of this image is running, waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            log(f"no image for recipe {target.name}, building it")
            prune(target)
            build(target)
        return target


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--print-dir", action="store_true", help="print the image directory, build nothing")
    args = parser.parse_args()
    if args.print_dir:
        print(image_dir())
        return
    if os.geteuid() != 0:
        sys.exit("error: building the VM image needs root (debootstrap, file ownership in the image)")
    ensure()


if __name__ == "__main__":
    main()
