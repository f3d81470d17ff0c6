"""The container test image (hack/build-container-image) and the shared podman base.

Real debootstrap, real podman, real systemd and wireguard-go in the containers; nothing mocked.
The first run builds the image (about 100 s, progress shown live); later runs find it cached.
"""

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "hack" / "build-container-image"
HOST_MIRROR = ROOT / "tests" / "images" / "container" / "host-mirror"
PODMAN_BASE = yaml.safe_load((ROOT / "molecule" / "shared" / "podman" / "defaults.yml").read_text())
IMAGE = PODMAN_BASE["podman_image"]
MIRROR = "http://mirror.invalid/debian"


def _env():
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "molecule" / "shared" / "containers.conf"))
    return env


def podman(*args, check=True):
    return subprocess.run(["podman", *args], env=_env(), capture_output=True, text=True, check=check)


# --- host-mirror: which Debian mirror the image is built from ------------------------------


def host_mirror(apt_dir, suite="bookworm"):
    result = subprocess.run([str(HOST_MIRROR), suite, str(apt_dir)], capture_output=True, text=True, check=False)
    return result.returncode, result.stdout.strip()


@pytest.fixture
def apt_dir(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    return tmp_path


def test_mirror_from_deb822_skips_security_updates_and_disabled(apt_dir):
    (apt_dir / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://disabled.invalid/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
        "# a comment between stanzas\n"
        f"Types: deb deb-src\nURIs: {MIRROR} http://second.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    assert host_mirror(apt_dir) == (0, MIRROR)


def test_mirror_from_one_line_sources_with_options(apt_dir):
    (apt_dir / "sources.list").write_text(
        "# deb http://commented.invalid/debian bookworm main\n"
        "deb-src http://src.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        f"{MIRROR} bookworm main contrib\n"
    )
    assert host_mirror(apt_dir) == (0, MIRROR)


def test_mirror_deb822_wins_over_sources_list(apt_dir):
    (apt_dir / "sources.list").write_text("deb http://old.invalid/debian bookworm main\n")
    (apt_dir / "sources.list.d" / "debian.sources").write_text(f"Types: deb\nURIs: {MIRROR}\nSuites: bookworm\n")
    assert host_mirror(apt_dir) == (0, MIRROR)


def test_no_mirror_for_another_suite_is_an_error(apt_dir):
    (apt_dir / "sources.list.d" / "debian.sources").write_text(
        f"Types: deb\nURIs: {MIRROR}\nSuites: bookworm-updates trixie\n"
    )
    assert host_mirror(apt_dir) == (1, "")


# --- the image ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image(request):
    missing = [tool for tool in ("podman", "debootstrap") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (hack/system-deps.txt)")
    if os.geteuid() != 0:
        pytest.skip("building the image needs root (debootstrap)")
    # Show the build's progress live instead of minutes of captured silence.
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        subprocess.run([str(BUILD)], env=_env(), check=True)
    return IMAGE


def _image_id(name):
    return podman("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()


def test_unchanged_recipe_is_not_rebuilt(image):
    before = _image_id(image)
    result = subprocess.run([str(BUILD)], env=_env(), capture_output=True, text=True, check=True)
    assert "up to date" in result.stdout
    assert _image_id(image) == before


def test_image_is_tagged_with_its_recipe_hash(image):
    recipe = podman("image", "inspect", "--format", '{{index .Labels "freifunk-wgmesh.recipe"}}', image).stdout.strip()
    assert len(recipe) == 12
    repository = image.rsplit(":", 1)[0]
    assert _image_id(f"{repository}:{recipe}") == _image_id(image)


@pytest.fixture(scope="module")
def start_container(image):
    """Start containers the way molecule/shared/podman/create.yml does; remove them afterwards."""
    started = []

    def start():
        name = f"wgmesh-imagetest-{uuid.uuid4().hex[:8]}"
        args = ["run", "--detach", "--name", name, "--systemd=always"]
        args += [f"--cap-add={cap}" for cap in PODMAN_BASE["podman_capabilities"]]
        args += [f"--device={device}" for device in PODMAN_BASE["podman_devices"]]
        podman(*args, image, "/sbin/init")
        started.append(name)
        return name

    yield start
    for name in started:
        podman("rm", "--force", "--time", "0", name, check=False)


@pytest.fixture(scope="module")
def container(start_container):
    return start_container()


def run_in(container, *argv, check=True):
    return podman("exec", container, *argv, check=check)


def wait_for_boot(container):
    """What create.yml does: wait for systemd's bus, then for the boot to end."""
    return run_in(container, "sh", "-c", PODMAN_BASE["podman_wait_for_boot"], check=False)


def test_systemd_boots_as_pid1_without_failed_units(container):
    boot = wait_for_boot(container)
    assert boot.returncode == 0, boot.stdout + boot.stderr
    assert boot.stdout.strip() == "running"
    assert run_in(container, "ps", "-o", "comm=", "-p", "1").stdout.strip() == "systemd"


def test_every_container_gets_its_own_machine_id(container, start_container):
    other = start_container()
    wait_for_boot(other)
    ids = [run_in(name, "cat", "/etc/machine-id").stdout.strip() for name in (container, other)]
    assert all(len(machine_id) == 32 for machine_id in ids), ids
    assert ids[0] != ids[1]


@pytest.mark.parametrize(
    "tool", ["python3", "wg", "wireguard-go", "keepalived", "mosquitto", "ip", "ping", "nft", "sudo", "ps"]
)
def test_tools_the_roles_need_are_installed(container, tool):
    assert run_in(container, "sh", "-c", f"command -v {tool}", check=False).returncode == 0, f"{tool} missing"


def test_python_can_drive_apt(container):
    # ansible.builtin.apt needs python3-apt on the managed host.
    assert run_in(container, "python3", "-c", "import apt_pkg", check=False).returncode == 0


def test_wireguard_go_brings_up_an_interface_without_privileged(container):
    interface = "wgimgtest0"
    started = run_in(
        container,
        "env",
        "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1",
        "wireguard-go",
        interface,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    try:
        run_in(container, "sh", "-c", f"wg genkey > /tmp/k && wg set {interface} private-key /tmp/k listen-port 51999")
        run_in(container, "ip", "link", "set", interface, "up")
        assert run_in(container, "wg", "show", interface, "listen-port").stdout.strip() == "51999"
    finally:
        run_in(container, "ip", "link", "delete", interface, check=False)


def test_container_cannot_change_host_sysctls(container):
    # No --privileged: /proc/sys stays read-only. Scenarios set namespaced
    # sysctls at create time (`extra_opts: [--sysctl=...]`), see docs/testing.md.
    write = run_in(container, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward", check=False)
    assert write.returncode != 0
    assert "Read-only" in write.stderr
