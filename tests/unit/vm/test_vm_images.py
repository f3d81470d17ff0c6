# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VM tier's image variants (molecule/shared/vm/): what can be checked without QEMU.

QEMU's command line for both variants, the recipe hashes that key the image cache, the
GRUB configuration the bootdisk variant writes, and its disk layout, assembled for real
with sfdisk, mkfs.fat, mtools and dd on small sparse files where the host has them.
"""

import importlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

VM_DIR = Path(__file__).resolve().parents[3] / "molecule" / "shared" / "vm"
sys.path.insert(0, str(VM_DIR))
bootdisk = importlib.import_module("bootdisk")
build_image = importlib.import_module("build_image")
vmctl = importlib.import_module("vmctl")

SEG = {"group": "239.255.1.2", "port": 30000}


def need(*programs):
    missing = [p for p in programs if not shutil.which(p)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on the host (hack/system-deps.txt)")


def run(argv, input=None, env=None):
    """The runner bootdisk's functions take (build_image.run without the log)."""
    env = {**os.environ, **(env or {})}
    subprocess.run([str(a) for a in argv], input=input, env=env, check=True, text=True, capture_output=True)


@pytest.fixture
def fixed_uuid(monkeypatch):
    monkeypatch.setattr(uuid, "uuid4", lambda: "00000000-0000-4000-8000-000000000001")


# --- QEMU's command line ------------------------------------------------------------


def test_default_platform_boots_the_image_kernel_as_before(tmp_path, fixed_uuid, monkeypatch):
    """The default variant's argv, item for item as before the bootdisk variant existed."""
    monkeypatch.setattr(vmctl, "EXTRA_KERNEL_ARGS", "")
    vm, image = tmp_path / "vm", tmp_path / "image"
    argv = vmctl.qemu_argv(vm, "gw1", {"name": "gw1"}, image, "tcg", SEG, 2222, "seed")
    mac0, mac1 = vmctl.mac("seed", "gw1", 0), vmctl.mac("seed", "gw1", 1)
    assert argv == [
        "qemu-system-x86_64", "-name", "gw1", "-nodefaults", "-no-user-config", "-display", "none",
        "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "768",
        "-uuid", "00000000-0000-4000-8000-000000000001",
        "-kernel", f"{image}/vmlinuz", "-initrd", f"{image}/initrd.img",
        "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 loglevel=4 panic=-1",
        "-drive", f"file={vm}/disk.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap",
        "-drive", f"file={vm}/seed.tar,if=virtio,format=raw,readonly=on",
        "-netdev", "user,id=mgmt,hostfwd=tcp:127.0.0.1:2222-:22",
        "-device", f"virtio-net-pci,netdev=mgmt,mac={mac0}",
        "-netdev", "socket,id=segment,mcast=239.255.1.2:30000,localaddr=127.0.0.1",
        "-device", f"virtio-net-pci,netdev=segment,mac={mac1}",
        "-object", "rng-random,id=rng,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng",
        "-serial", f"file:{vm}/console.log", "-pidfile", f"{vm}/qemu.pid", "-daemonize",
    ]  # fmt: skip


def test_bootdisk_platform_boots_through_the_firmware_from_its_disk(tmp_path, fixed_uuid):
    vm, image = tmp_path / "vm", tmp_path / "image"
    platform = {"name": "k1", "image": "bootdisk", "memory": 1024}
    argv = vmctl.qemu_argv(vm, "k1", platform, image, "tcg", SEG, 2222, "seed")
    assert not {"-kernel", "-initrd", "-append"} & set(argv)
    drives = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-drive"]
    devices = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]
    assert drives[0] == f"if=pflash,format=raw,unit=0,readonly=on,file={vmctl.OVMF_CODE}"
    # The variable store is the VM's own file: `boot` after `crash` replays this argv.
    assert drives[1] == f"if=pflash,format=raw,unit=1,file={vm}/OVMF_VARS.fd"
    assert drives[2].startswith(f"file={vm}/disk.qcow2,if=none,id=disk,")
    assert drives[3].startswith(f"file={vm}/seed.tar,if=none,id=seed,")
    # The disk is the first block device (vda) and the boot device; the seed is vdb.
    assert devices[:2] == ["virtio-blk-pci,drive=disk,bootindex=0", "virtio-blk-pci,drive=seed"]
    assert all(",romfile=" in d for d in devices if d.startswith("virtio-net-pci"))
    assert argv[argv.index("-m") + 1] == "1024"
    assert f"file:{vm}/console.log" in argv


def test_platform_images_in_order_each_once():
    platforms = [{"name": "a", "image": "bootdisk"}, {"name": "b"}, {"name": "c", "image": "bootdisk"}]
    assert vmctl.platform_images(platforms) == ["bootdisk", "default"]
    assert vmctl.platform_images([{"name": "a"}]) == ["default"]


def test_an_unknown_image_names_the_platform(capsys):
    with pytest.raises(SystemExit) as exc:
        vmctl.platform_images([{"name": "gw1"}, {"name": "gw2", "image": "grub"}])
    assert "'gw2'" in str(exc.value) and "'grub'" in str(exc.value) and "bootdisk" in str(exc.value)


def test_the_image_step_without_platforms_asks_for_the_default_image_only(tmp_path, monkeypatch):
    """The lab's machines.yml calls `image` without --platforms; it must still get the default image."""
    monkeypatch.setattr(build_image, "cache_root", lambda: tmp_path / "cache")
    target = build_image.image_dir()
    target.mkdir(parents=True)
    args = type("Args", (), {"platforms": None, "state_dir": tmp_path, "seconds": 0})
    assert vmctl.cmd_image(args) == 0
    # A bootdisk platform: its image is not there, so the step starts its build (stopped here).
    args.platforms = json.dumps([{"name": "gw1"}, {"name": "k1", "image": "bootdisk"}])
    started = []

    class Started(Exception):
        pass

    def popen(argv, **kwargs):
        started.append(argv)
        raise Started

    monkeypatch.setattr(vmctl.subprocess, "Popen", popen)
    with pytest.raises(Started):
        vmctl.cmd_image(args)
    assert started[0][1:] == [str(VM_DIR / "build_image.py"), "--variant", "default", "--variant", "bootdisk"]


# --- recipe hashes ------------------------------------------------------------------


def load_recipe(directory):
    """build_image as loaded from a copy of its directory, so the copy's files can be edited."""
    for name in ("build_image", "bootdisk"):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module("build_image")
    finally:
        sys.path.remove(str(directory))
        for name in ("build_image", "bootdisk"):
            sys.modules.pop(name, None)
        # the tests above keep using the real modules
        sys.modules["build_image"], sys.modules["bootdisk"] = build_image, bootdisk


def test_the_variant_file_is_in_the_bootdisk_recipe_only():
    assert Path(bootdisk.__file__).resolve() not in build_image.recipe_files("default")
    assert Path(bootdisk.__file__).resolve() in build_image.recipe_files("bootdisk")
    assert set(build_image.recipe_files("default")) < set(build_image.recipe_files("bootdisk"))


def test_changing_the_variant_rebuilds_only_the_variant(tmp_path):
    copy = tmp_path / "vm"
    shutil.copytree(VM_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = load_recipe(copy)
    hashes = {v: before.recipe_hash(v) for v in before.VARIANTS}
    assert hashes["default"] != hashes["bootdisk"]
    (copy / "bootdisk.py").write_text((copy / "bootdisk.py").read_text() + "\n# changed\n")
    after = load_recipe(copy)
    assert after.recipe_hash("default") == hashes["default"]
    bootdisk_after = after.recipe_hash("bootdisk")
    assert bootdisk_after != hashes["bootdisk"]
    (copy / "rootfs/etc/fstab").write_text("# changed\n")
    changed = load_recipe(copy)
    assert changed.recipe_hash("default") != hashes["default"]
    assert changed.recipe_hash("bootdisk") != bootdisk_after


def test_image_directories_and_their_variants(tmp_path, monkeypatch):
    monkeypatch.setattr(build_image, "cache_root", lambda: tmp_path)
    default, boot = build_image.image_dir("default"), build_image.image_dir("bootdisk")
    assert default.name == build_image.recipe_hash("default")
    assert boot.name == "bootdisk-" + build_image.recipe_hash("bootdisk")
    assert build_image.variant_of(default.name) == "default"
    assert build_image.variant_of(boot.name) == "bootdisk"
    assert build_image.variant_of(boot.name + ".tmp-123") is None
    assert build_image.variant_of("build.lock") is None
    with pytest.raises(ValueError, match="unknown VM image 'grub'"):
        build_image.image_dir("grub")


def test_prune_keeps_the_other_variants_images(tmp_path, monkeypatch):
    monkeypatch.setattr(build_image, "cache_root", lambda: tmp_path)
    images = tmp_path / "images"
    defaults = [images / f"{i:016x}" for i in range(4)]
    boots = [images / f"bootdisk-{i:016x}" for i in range(4)]
    for path in defaults + boots:
        path.mkdir(parents=True)
    build_image.prune(boots[0], "bootdisk")
    assert all(p.exists() for p in defaults)
    assert sum(p.exists() for p in boots[1:]) == build_image.KEEP_IMAGES


# --- GRUB configuration -------------------------------------------------------------


def test_early_config_finds_the_root_by_label():
    assert bootdisk.early_config("wgmesh-root").splitlines() == [
        "search --no-floppy --label --set=root wgmesh-root",
        "set prefix=($root)/boot/grub",
    ]


def test_first_grub_cfg_boots_debians_kernel_links_with_the_tiers_arguments():
    cfg = bootdisk.grub_cfg("wgmesh-root")
    linux = [line.strip() for line in cfg.splitlines() if line.strip().startswith("linux ")]
    assert linux == [f"linux /vmlinuz root=LABEL=wgmesh-root ro {bootdisk.KERNEL_ARGS}"]
    assert "initrd /initrd.img" in cfg
    assert "set timeout=0" in cfg
    # grub-reboot's one-time entry: used once, then cleared in grubenv
    assert 'set default="${next_entry}"' in cfg and "save_env next_entry" in cfg
    assert vmctl.KERNEL_ARGS.endswith(bootdisk.KERNEL_ARGS)  # one command line for both variants


TEMPLATE = """\
# If you change this file, run 'update-grub' afterwards
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""
# Uncomment to disable graphical terminal
#GRUB_TERMINAL=console
"""


def test_default_grub_sets_timeout_command_line_and_terminal():
    lines = bootdisk.default_grub(TEMPLATE).splitlines()
    assert "GRUB_TIMEOUT=0" in lines and "GRUB_TIMEOUT=5" not in lines
    assert f'GRUB_CMDLINE_LINUX="{bootdisk.KERNEL_ARGS}"' in lines
    assert 'GRUB_CMDLINE_LINUX_DEFAULT=""' in lines
    assert "GRUB_TERMINAL=console" in lines
    assert "GRUB_DEFAULT=0" in lines  # left to the roles (GRUB_DEFAULT=saved)


def test_default_grub_fails_on_a_changed_template():
    with pytest.raises(ValueError, match="GRUB_TERMINAL"):
        bootdisk.default_grub(TEMPLATE.replace("#GRUB_TERMINAL=console\n", ""))


def test_fstab_by_label():
    assert bootdisk.fstab("wgmesh-root").splitlines() == [
        "LABEL=wgmesh-root / ext4 defaults,errors=remount-ro 0 1",
        "LABEL=WGMESH-ESP /boot/efi vfat umask=0077,nofail 0 0",
    ]


# --- disk layout ----------------------------------------------------------------------


def test_layout_arithmetic():
    parts = bootdisk.layout(root_mib=3000, esp_mib=64)
    assert parts == {
        "esp_start": 2048,
        "esp_sectors": 64 * 2048,
        "root_start": 2048 + 64 * 2048,
        "root_sectors": 3000 * 2048,
        "disk_mib": 1 + 64 + 3000 + 1,
    }
    # The root ends before the backup GPT (its 32 sectors of entries and the header).
    assert parts["root_start"] + parts["root_sectors"] <= parts["disk_mib"] * 2048 - 33


def sfdisk_json(disk):
    out = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["partitiontable"]


def test_sfdisk_accepts_the_table_on_a_plain_file(tmp_path):
    need("sfdisk")
    parts = bootdisk.layout(root_mib=20, esp_mib=8)
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(parts["disk_mib"] * 1024 * 1024)
    run(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk],
        input=bootdisk.sfdisk_script(parts, "wgmesh-root"),
    )
    table = sfdisk_json(disk)
    assert table["label"] == "gpt"
    (esp, root) = table["partitions"]
    assert (esp["start"], esp["size"], esp["type"]) == (2048, 8 * 2048, bootdisk.ESP_TYPE)
    assert (root["start"], root["size"], root["type"]) == (parts["root_start"], 20 * 2048, bootdisk.LINUX_TYPE)
    assert root["name"] == "wgmesh-root"


def test_esp_holds_grub_at_the_removable_path(tmp_path):
    need("mkfs.fat", "mmd", "mcopy", "mtype", "mlabel")
    efi = tmp_path / "BOOTX64.EFI"
    efi.write_bytes(b"MZ not really GRUB" * 1000)
    esp = tmp_path / "esp.fat"
    bootdisk.make_esp(esp, efi, run)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    copied = subprocess.run(["mtype", "-i", esp, f"::/{bootdisk.EFI_BINARY}"], env=env, capture_output=True, check=True)
    assert copied.stdout == efi.read_bytes()
    label = subprocess.run(["mlabel", "-s", "-i", esp, "::"], env=env, capture_output=True, text=True, check=True)
    assert bootdisk.ESP_LABEL in label.stdout
    assert esp.stat().st_size == bootdisk.ESP_MIB * 1024 * 1024


def test_assemble_places_each_file_system_at_its_partition(tmp_path):
    need("sfdisk", "dd")
    esp, root = tmp_path / "esp", tmp_path / "root"
    esp.write_bytes(b"E" * 4096 + bytes(bootdisk.ESP_MIB * 1024 * 1024 - 4096))
    root.write_bytes(b"R" * 512 + bytes(3 * 1024 * 1024 - 1024) + b"r" * 512)  # 3 MiB, marked at both ends
    disk = tmp_path / "disk.raw"
    parts = bootdisk.assemble(disk, esp, root, 3, "wgmesh-root", run)
    data = disk.read_bytes()
    assert len(data) == parts["disk_mib"] * 1024 * 1024
    esp_at, root_at = parts["esp_start"] * 512, parts["root_start"] * 512
    assert data[esp_at : esp_at + 4096] == b"E" * 4096
    assert data[root_at : root_at + 512] == b"R" * 512
    root_end = root_at + 3 * 1024 * 1024
    assert data[root_end - 512 : root_end] == b"r" * 512
    assert [p["start"] for p in sfdisk_json(disk)["partitions"]] == [parts["esp_start"], parts["root_start"]]
    # zero blocks stay holes: the disk file is sparse
    assert disk.stat().st_blocks * 512 < len(data) // 2


def test_symlinks_in_the_image_tree_resolve_inside_it(tmp_path):
    """The headers check: an absolute link in the image must not be read against the host's /."""
    root = tmp_path / "root"
    (root / "usr/lib/modules/6.1.0-9-amd64").mkdir(parents=True)
    (root / "usr/src/linux-headers-6.1.0-9-amd64").mkdir(parents=True)
    (root / "usr/src/linux-headers-6.1.0-9-amd64/Makefile").write_text("")
    (root / "lib").symlink_to("usr/lib")  # merged /usr, relative
    (root / "usr/lib/modules/6.1.0-9-amd64/build").symlink_to("/usr/src/linux-headers-6.1.0-9-amd64")
    (root / "vmlinuz").symlink_to("boot/vmlinuz-6.1.0-9-amd64")
    assert bootdisk.exists_in(root, "/lib/modules/6.1.0-9-amd64/build/Makefile")
    assert not bootdisk.exists_in(root, "/lib/modules/6.1.0-9-amd64/build/Kbuild")
    assert not bootdisk.exists_in(root, "/vmlinuz")  # dangling inside the tree
    (root / "loop").symlink_to("/loop")
    assert not bootdisk.exists_in(root, "/loop")
