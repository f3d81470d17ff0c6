# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start, watch and stop the QEMU VMs of one Molecule scenario.

Used by create.yml/destroy.yml; everything about a run lives in its state directory
(the scenario's ephemeral directory): the SSH key, and per VM a qcow2 overlay on the
cached base image, a seed disk, the console log and vm.json with the QEMU PID (and for a
`bootdisk` platform its own copy of the UEFI variable store).

A platform's `image` picks the image variant (build_image.VARIANTS): `default` (QEMU boots
the image's kernel directly) or `bootdisk` (UEFI firmware, GRUB boots from the VM's disk).

  vmctl.py image  --state-dir D [--platforms JSON]  build/reuse the platforms' images (exit 75: still building)
  vmctl.py start  --state-dir D --platforms JSON    start missing VMs, print the instance config
  vmctl.py wait   --state-dir D                     exit 0 when every VM's sshd answers, 75: not yet
  vmctl.py stop   --state-dir D                     kill the recorded QEMUs, remove their files
  vmctl.py crash  --state-dir D --name N            SIGKILL one VM's QEMU: a host crash (the lab's HA takeover)
  vmctl.py boot   --state-dir D --name N            power a crashed VM on again with its own disk
  vmctl.py accel                                    print the accelerator VMs will use (kvm or tcg)

Exit code 75 (EX_TEMPFAIL) means "not done yet, call again"; each call waits a few
seconds and prints what is going on, so the playbook can show progress while it polls.
"""

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import bootdisk
import build_image

# The repository root: tests.support is shared by the tests, bench/ and these helpers.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.support.net import free_port

NOT_YET = 75
QEMU = "qemu-system-x86_64"
SSH_USER = "root"
KERNEL_ARGS = f"root=/dev/vda rw {bootdisk.KERNEL_ARGS}"
EXTRA_KERNEL_ARGS = os.environ.get("WGMESH_VM_APPEND", "")  # for debugging: e.g. systemd.log_level=debug
# UEFI firmware for `bootdisk` VMs (Debian package ovmf): the code read-only and shared,
# the variable store copied per VM (boot entries OVMF records live there).
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
DEFAULT_MEMORY_MIB = 768
BOOT_TIMEOUT = int(os.environ.get("WGMESH_VM_BOOT_TIMEOUT", "600"))
BUILD_TIMEOUT = int(os.environ.get("WGMESH_VM_BUILD_TIMEOUT", "3600"))
ACCEL_ENV = "WGMESH_VM_ACCEL"


def say(msg):
    print(msg, flush=True)


def last_line(path):
    try:
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return ""
    # drop the terminal escapes systemd puts around "[  OK  ]"
    line = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", lines[-1] if lines else "")
    return "".join(ch for ch in line if ch.isprintable())[:150]


def tail(path, count=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-count:])
    except FileNotFoundError:
        return f"({path} does not exist)"


def pid_alive(pid, marker):
    """True if `pid` runs and its command line contains `marker` (guards against PID reuse)."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return False


# --- base image -----------------------------------------------------------------


def platform_images(platforms):
    """The image variants the platforms name, in order, each once; a bad name is an error."""
    variants = []
    for platform in platforms:
        variant = platform.get("image", build_image.DEFAULT)
        if variant not in build_image.VARIANTS:
            sys.exit(
                f"error: platform {platform.get('name', '?')!r}: image {variant!r} is not one of"
                f" {', '.join(build_image.VARIANTS)}"
            )
        if variant not in variants:
            variants.append(variant)
    return variants


def cmd_image(args):
    """Make sure the images exist; build them in the background while we report progress."""
    variants = platform_images(json.loads(args.platforms)) if args.platforms else [build_image.DEFAULT]
    targets = [str(build_image.image_dir(v)) for v in variants]
    record = args.state_dir / "image-build.json"
    deadline = time.monotonic() + args.seconds
    while True:
        if all(Path(t).exists() for t in targets):
            record.unlink(missing_ok=True)
            for target in targets:
                say(f"base image {target}")
            return 0
        if record.exists() and json.loads(record.read_text()).get("targets") != targets:
            record.unlink()  # left by a run for another recipe
        if not record.exists():
            log = args.state_dir / "image-build.log"
            argv = [sys.executable, str(Path(build_image.__file__).resolve())]
            for variant in variants:
                argv += ["--variant", variant]
            with open(log, "w") as out:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives this call; the next call watches it
                )
            record.write_text(
                json.dumps({"pid": proc.pid, "log": str(log), "started": time.time(), "targets": targets})
            )
            names = ", ".join(Path(t).name for t in targets)
            say(f"building base image {names} in the background (pid {proc.pid}, log {log})")
            return NOT_YET
        build = json.loads(record.read_text())
        if not pid_alive(build["pid"], "build_image.py"):
            if all(Path(t).exists() for t in targets):
                continue
            record.unlink()
            say(f"the image build failed; last lines of {build['log']}:\n{tail(build['log'])}")
            return 1
        if time.time() - build["started"] > BUILD_TIMEOUT:
            say(f"the image build runs for more than {BUILD_TIMEOUT} s; see {build['log']}")
            return 1
        if time.monotonic() > deadline:
            say(f"building ({time.time() - build['started']:.0f} s): {last_line(build['log'])}")
            return NOT_YET
        time.sleep(1)


# --- accelerator ------------------------------------------------------------------


def probe_kvm(image):
    """Boot the image's kernel without a root disk under KVM: a working KVM gets it to its
    panic (and QEMU exits, -no-reboot) within seconds. /dev/kvm can exist yet fail or hang
    on real guests (nested setups), so opening it proves nothing."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "no usable /dev/kvm"
    with tempfile.TemporaryDirectory(prefix="wgmesh-kvm-probe-") as tmp:
        console = Path(tmp) / "console"
        argv = [QEMU, "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults", "-no-user-config"]
        argv += ["-display", "none", "-no-reboot", "-serial", f"file:{console}"]
        argv += ["-kernel", str(image / "vmlinuz"), "-append", "console=ttyS0 panic=-1"]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except subprocess.TimeoutExpired:
            return False, "a KVM guest kernel did not reach its end within 30 s"
        text = console.read_text(errors="replace") if console.exists() else ""
        if "Kernel panic" in text:
            return True, "a KVM guest kernel booted"
        error = proc.stderr.strip().splitlines()[:1] or [f"exit code {proc.returncode}"]
        return False, f"a KVM guest kernel did not boot (QEMU: {error[0]})"


def choose_accel(image):
    """kvm or tcg, with the reason. Probed once per host boot, cached."""
    forced = os.environ.get(ACCEL_ENV)
    if forced:
        if forced not in ("kvm", "tcg"):
            sys.exit(f"error: {ACCEL_ENV}={forced!r}: must be kvm or tcg")
        return forced, f"{ACCEL_ENV}={forced}"
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    cache = build_image.cache_root() / "accel.json"
    try:
        known = json.loads(cache.read_text())
        if known["boot_id"] == boot_id:
            return known["accel"], known["reason"] + " (cached for this host boot)"
    except (FileNotFoundError, KeyError, ValueError):
        pass
    ok, reason = probe_kvm(image)
    accel = "kvm" if ok else "tcg"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"boot_id": boot_id, "accel": accel, "reason": reason}))
    return accel, reason


def cmd_accel(_args):
    images = [build_image.image_dir(variant) for variant in build_image.VARIANTS]
    built = [image for image in images if image.exists()]
    if not built:
        sys.exit(f"error: no image yet ({images[0]}); run build_image.py first")
    accel, reason = choose_accel(built[0])
    say(f"{accel}: {reason}")
    return 0


# --- VMs ----------------------------------------------------------------------------


def mac(seed, name, nic):
    digest = hashlib.sha256(f"{seed}/{name}/{nic}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def ssh_key(state_dir):
    key = state_dir / "id_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "molecule-vm", "-f", str(key)],
            check=True,
        )
    return key


def segment(state_dir):
    """The multicast group and port of this run's shared L2 segment (QEMU -netdev socket)."""
    path = state_dir / "segment.json"
    if not path.exists():
        rnd = random.SystemRandom()
        seg = {"group": f"239.255.{rnd.randrange(256)}.{rnd.randrange(1, 255)}", "port": rnd.randrange(20000, 60000)}
        path.write_text(json.dumps(seg))
    return json.loads(path.read_text())


def write_seed(vm_dir, name, public_key):
    """A bare tar archive as the seed disk: the guest reads it with `tar -xf /dev/vdb`."""
    seed = vm_dir / "seed.tar"
    with tarfile.open(seed, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in (("authorized_keys", public_key), ("hostname", f"{name}\n")):
            info = tarfile.TarInfo(member)
            info.size = len(data.encode())
            info.mode = 0o600
            tar.addfile(info, fileobj=io.BytesIO(data.encode()))
    return seed


def qemu_argv(vm_dir, name, platform, image, accel, seg, port, seed_tag):
    argv = [QEMU, "-name", name, "-nodefaults", "-no-user-config", "-display", "none"]
    argv += ["-accel", accel, "-cpu", "host" if accel == "kvm" else "max"]
    argv += ["-smp", str(platform.get("cpus", 1)), "-m", str(platform.get("memory", DEFAULT_MEMORY_MIB))]
    # A distinct SMBIOS UUID per VM: systemd derives the machine-id from it when it has one.
    argv += ["-uuid", str(uuid.uuid4())]
    disk, seed = vm_dir / "disk.qcow2", vm_dir / "seed.tar"
    disk_opts = "format=qcow2,cache=unsafe,discard=unmap"
    nic = "virtio-net-pci"
    if platform.get("image", build_image.DEFAULT) == build_image.DEFAULT:
        argv += [
            "-kernel",
            str(image / "vmlinuz"),
            "-initrd",
            str(image / "initrd.img"),
            "-append",
            f"{KERNEL_ARGS} {EXTRA_KERNEL_ARGS}".strip(),
        ]
        argv += ["-drive", f"file={disk},if=virtio,{disk_opts}"]
        argv += ["-drive", f"file={seed},if=virtio,format=raw,readonly=on"]
    else:
        # UEFI: the firmware boots GRUB from the disk (bootindex 0), GRUB the kernel it chooses.
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"]
        argv += ["-drive", f"if=pflash,format=raw,unit=1,file={vm_dir / 'OVMF_VARS.fd'}"]
        # Devices in this order: the guest's vda is the disk, vdb the seed (wgmesh-seed reads it).
        argv += ["-drive", f"file={disk},if=none,id=disk,{disk_opts}"]
        argv += ["-device", "virtio-blk-pci,drive=disk,bootindex=0"]
        argv += ["-drive", f"file={seed},if=none,id=seed,format=raw,readonly=on"]
        argv += ["-device", "virtio-blk-pci,drive=seed"]
        nic += ",romfile="  # no iPXE option ROMs: nothing to boot from the network, less firmware work
    argv += ["-netdev", f"user,id=mgmt,hostfwd=tcp:127.0.0.1:{port}-:22"]
    argv += ["-device", f"{nic},netdev=mgmt,mac={mac(seed_tag, name, 0)}"]
    argv += ["-netdev", f"socket,id=segment,mcast={seg['group']}:{seg['port']},localaddr=127.0.0.1"]
    argv += ["-device", f"{nic},netdev=segment,mac={mac(seed_tag, name, 1)}"]
    argv += ["-object", "rng-random,id=rng,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng"]
    argv += ["-serial", f"file:{vm_dir / 'console.log'}"]
    argv += ["-pidfile", str(vm_dir / "qemu.pid"), "-daemonize"]
    return argv


def start_vm(state_dir, platform, image, accel, seg, public_key):
    name = platform["name"]
    vm_dir = state_dir / "vms" / name
    record = vm_dir / "vm.json"
    if record.exists():
        vm = json.loads(record.read_text())
        if pid_alive(vm["pid"], str(vm_dir)):
            return vm
    shutil.rmtree(vm_dir, ignore_errors=True)
    vm_dir.mkdir(parents=True)
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            str(image / "disk.qcow2"),
            str(vm_dir / "disk.qcow2"),
        ],
        check=True,
    )
    write_seed(vm_dir, name, public_key)
    variant = platform.get("image", build_image.DEFAULT)
    if variant != build_image.DEFAULT:
        shutil.copy(OVMF_VARS, vm_dir / "OVMF_VARS.fd")  # this VM's own, kept by crash and boot
    port, argv = launch(name, lambda port: qemu_argv(vm_dir, name, platform, image, accel, seg, port, str(state_dir)))
    vm = {
        "name": name,
        "pid": int((vm_dir / "qemu.pid").read_text()),
        "port": port,
        "accel": accel,
        "image": variant,
        "started": time.time(),
        "argv": argv,
    }
    record.write_text(json.dumps(vm, indent=2))
    say(f"{name}: started ({accel}), pid {vm['pid']}, ssh 127.0.0.1:{port}")
    return vm


def launch(name, argv_for_port, ports=()):
    """Run QEMU (it daemonizes) with the first SSH port it can bind: `ports`, then free ones."""
    tries = [*ports, *(None for dummy in range(5))]  # a port may be taken between picking and binding it
    for port in tries:
        port = port or free_port()
        argv = argv_for_port(port)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return port, argv
        if "hostfwd" not in proc.stderr and "host forwarding" not in proc.stderr:
            sys.exit(f"error: QEMU for {name} failed: {proc.stderr.strip()}\n$ {' '.join(argv)}")
    sys.exit(f"error: QEMU for {name} found no free SSH port: {proc.stderr.strip()}")


def recorded_vm(state_dir, name):
    record = state_dir / "vms" / name / "vm.json"
    if not record.exists():
        sys.exit(f"error: no VM {name!r} recorded under {state_dir / 'vms'}")
    return record, json.loads(record.read_text())


def cmd_crash(args):
    """Cut a VM's power: SIGKILL its QEMU, as a host crash (no shutdown, no FIN, no last packet)."""
    record, vm = recorded_vm(args.state_dir, args.name)
    if not pid_alive(vm["pid"], str(record.parent)):
        sys.exit(f"error: {args.name}: QEMU (pid {vm['pid']}) is not running")
    killed_at = time.time()
    os.kill(vm["pid"], signal.SIGKILL)
    while pid_alive(vm["pid"], str(record.parent)):
        time.sleep(0.01)
    say(json.dumps({"name": args.name, "pid": vm["pid"], "killed_at": killed_at}))
    return 0


def cmd_boot(args):
    """Power a crashed VM on again with its own disk (what `start` would replace with a new one)."""
    record, vm = recorded_vm(args.state_dir, args.name)
    if pid_alive(vm["pid"], str(record.parent)):
        say(f"{args.name}: already running, pid {vm['pid']}")
        return 0
    fwd = f"hostfwd=tcp:127.0.0.1:{vm['port']}-"

    def argv_for_port(port):
        return [arg.replace(fwd, f"hostfwd=tcp:127.0.0.1:{port}-") for arg in vm["argv"]]

    port, argv = launch(args.name, argv_for_port, ports=(vm["port"],))
    vm.update(pid=int((record.parent / "qemu.pid").read_text()), port=port, argv=argv, started=time.time())
    vm.pop("ssh_after", None)
    record.write_text(json.dumps(vm, indent=2))
    say(f"{args.name}: booted from its disk, pid {vm['pid']}, ssh 127.0.0.1:{port}")
    return 0


def missing_firmware():
    return [str(path) for path in (OVMF_CODE, OVMF_VARS) if not path.exists()]


def cmd_start(args):
    platforms = json.loads(args.platforms)
    names = [p.get("name", "") for p in platforms]
    if not names or not all(names) or len(set(names)) != len(names):
        sys.exit(f"error: platforms need unique, non-empty names; got {names}")
    images = {variant: build_image.image_dir(variant) for variant in platform_images(platforms)}
    for variant, image in images.items():
        if not image.exists():
            sys.exit(f"error: no {variant} image {image}; run `vmctl.py image --platforms ...` first")
    if any(variant != build_image.DEFAULT for variant in images) and missing_firmware():
        sys.exit(f"error: bootdisk VMs need the UEFI firmware of Debian's ovmf package: {missing_firmware()} missing")
    accel, reason = choose_accel(next(iter(images.values())))
    say(f"accelerator {accel}: {reason}")
    key = ssh_key(args.state_dir)
    public_key = Path(f"{key}.pub").read_text()
    seg = segment(args.state_dir)
    instances = []
    for platform in platforms:
        image = images[platform.get("image", build_image.DEFAULT)]
        vm = start_vm(args.state_dir, platform, image, accel, seg, public_key)
        instances.append(
            {
                "instance": vm["name"],
                "address": "127.0.0.1",
                "port": vm["port"],
                "user": SSH_USER,
                "identity_file": str(key),
            }
        )
    (args.state_dir / "instances.json").write_text(json.dumps(instances, indent=2))
    return 0


def ssh_banner(port):
    """sshd's banner; QEMU's port forward accepts connections before the guest listens."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def cmd_wait(args):
    deadline = time.monotonic() + args.seconds
    records = sorted((args.state_dir / "vms").glob("*/vm.json"))
    if not records:
        sys.exit(f"error: no VMs recorded under {args.state_dir / 'vms'}")
    while True:
        waiting = []
        for record in records:
            vm = json.loads(record.read_text())
            console = record.parent / "console.log"
            age = time.time() - vm["started"]
            if not pid_alive(vm["pid"], str(record.parent)):
                say(f"{vm['name']}: QEMU (pid {vm['pid']}) is gone; console:\n{tail(console)}")
                return 1
            # Booted once (`boot` forgets it): a busy guest that is slow to answer now is no boot failure.
            if "ssh_after" in vm or ssh_banner(vm["port"]):
                if "ssh_after" not in vm:
                    vm["ssh_after"] = round(age, 1)
                    record.write_text(json.dumps(vm, indent=2))
                continue
            if age > BOOT_TIMEOUT:
                say(f"{vm['name']}: no SSH after {age:.0f} s; console:\n{tail(console)}")
                return 1
            waiting.append(f"{vm['name']}: booting {age:.0f} s: {last_line(console)}")
        if not waiting:
            for record in records:
                vm = json.loads(record.read_text())
                say(
                    f"{vm['name']}: sshd answers on 127.0.0.1:{vm['port']},"
                    f" {vm['ssh_after']} s after start ({vm['accel']})"
                )
            return 0
        if time.monotonic() > deadline:
            say("\n".join(waiting))
            return NOT_YET
        time.sleep(1)


def cmd_stop(args):
    """Kill every recorded QEMU and remove the VM files; fine with half-created VMs."""
    vms = args.state_dir / "vms"
    for vm_dir in sorted(vms.glob("*")) if vms.exists() else []:
        pid = None
        try:
            pid = json.loads((vm_dir / "vm.json").read_text())["pid"]
        except (FileNotFoundError, KeyError, ValueError):
            # QEMU wrote its PID file but we did not get to write vm.json
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid = int((vm_dir / "qemu.pid").read_text())
        if pid and pid_alive(pid, str(vm_dir)):
            os.kill(pid, signal.SIGTERM)
            for dummy in range(50):
                if not pid_alive(pid, str(vm_dir)):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
            say(f"{vm_dir.name}: stopped QEMU pid {pid}")
        shutil.rmtree(vm_dir, ignore_errors=True)
    for leftover in ("segment.json", "instances.json"):
        (args.state_dir / leftover).unlink(missing_ok=True)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("image", "start", "wait", "stop", "crash", "boot"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--state-dir", type=Path, required=True)
        if name in ("image", "wait"):
            cmd.add_argument("--seconds", type=float, default=10, help="wait at most this long before answering 75")
        if name in ("image", "start"):
            cmd.add_argument(
                "--platforms", required=name == "start", help="JSON list of {name, memory?, cpus?, image?}"
            )
        if name in ("crash", "boot"):
            cmd.add_argument("--name", required=True, help="the VM (its platform name)")
    sub.add_parser("accel")
    args = parser.parse_args()
    if getattr(args, "state_dir", None):
        args.state_dir = args.state_dir.resolve()
        args.state_dir.mkdir(parents=True, exist_ok=True)
    commands = {"image": cmd_image, "start": cmd_start, "wait": cmd_wait, "stop": cmd_stop, "accel": cmd_accel}
    return {**commands, "crash": cmd_crash, "boot": cmd_boot}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
