"""What the kernel_build role promises, checked in the container and on the controller.

The names are computed here again from the scenario's own inputs (the patches' and fragments'
bytes, the container's linux-source-6.1 version) with the naming rule's module, not read from
the role's output: the packages must carry exactly those names.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCENARIO = Path(__file__).resolve().parents[1]
FILES = SCENARIO / "files"
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
FETCH_DIR = EPHEMERAL / "kernel-packages"
BUILD_DIR = "/var/lib/wgmesh-kernel-build"
PATCHES = [
    FILES / "patches" / "0001-init-add-wgmesh-test-marker.patch",
    FILES / "patches" / "0002-init-second-wgmesh-test-marker.patch",
]
# The scenario's fragment, then the role's own (tinyconfig is a make target: no distribution-keys).
FRAGMENTS = [FILES / "wgmesh-test.config", ROOT / "roles" / "kernel_build" / "files" / "wgmesh-required.config"]

# The naming rule itself, loaded from its file (it needs nothing of Ansible).
_spec = importlib.util.spec_from_file_location("wgmesh_kernel_rule", ROOT / "plugins" / "module_utils" / "_kernel.py")
rule = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rule)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def names(host):
    source_version = host.check_output("dpkg-query --showformat '${Version}' --show linux-source-6.1")
    arch = host.check_output("dpkg --print-architecture")
    identity = {
        "source": f"debian:linux-source-6.1={source_version}",
        "arch": arch,
        "config": "tinyconfig",
        "patches": [sha256(p) for p in PATCHES],
        "fragments": [sha256(f) for f in FRAGMENTS],
    }
    suffix = rule.suffix(identity, "wgmesh")
    # Debian's version is <upstream>-<debian revision>; the upstream part is the kernel version.
    kernelversion = source_version.rsplit("-", 1)[0]
    computed = rule.packages(kernelversion + suffix, arch, "1")
    computed["suffix"] = suffix
    computed["identity"] = identity
    computed["set_dir"] = f"{BUILD_DIR}/{suffix[1:]}"
    print(f"\nexpected release {computed['release']}, packages {computed['install']}")
    return computed


def deb_field(host, path, field):
    return host.check_output(f"dpkg-deb --field {shlex.quote(path)} {field}")


def deb_member(host, deb, member):
    """One file of a package, read without installing it."""
    return host.check_output(f"dpkg-deb --fsys-tarfile {shlex.quote(deb)} | tar -xOf - {shlex.quote(member)}")


def test_packages_carry_the_computed_names(host, names):
    built = set(host.check_output(f"ls {names['set_dir']}").split())
    for kind in ("image", "headers", "libc_dev"):
        assert names["debs"][kind] in built, f"{names['debs'][kind]} missing; {names['set_dir']} holds {sorted(built)}"
    for kind in ("image", "headers"):
        deb = f"{names['set_dir']}/{names['debs'][kind]}"
        assert deb_field(host, deb, "Package") == names["packages"][kind]
        assert deb_field(host, deb, "Version") == names["version"]
        assert deb_field(host, deb, "Architecture") == names["arch"]
        size = host.file(deb).size
        print(f"{names['debs'][kind]}: {size} bytes")


def test_version_carries_the_suffix(host, names):
    version = deb_field(host, f"{names['set_dir']}/{names['debs']['image']}", "Version")
    assert version == f"{names['release']}-1"
    assert names["suffix"] in version
    assert names["suffix"].startswith("-wgmesh.") and len(names["suffix"]) == len("-wgmesh.") + 8


def test_patches_landed_in_the_image(host, names):
    deb = f"{names['set_dir']}/{names['debs']['image']}"
    release = names["release"]
    system_map = deb_member(host, deb, f"./boot/System.map-{release}")
    # Patch 1's initcall, and patch 2's, which changes the file patch 1 adds.
    assert " wgmesh_marker_first" in system_map
    assert " wgmesh_marker_second" in system_map
    config = deb_member(host, deb, f"./boot/config-{release}").splitlines()
    # The scenario's fragment turned on the option patch 1 adds; the role's own fragment holds.
    assert "CONFIG_WGMESH_TEST_MARKER=y" in config
    assert 'CONFIG_LOCALVERSION=""' in config
    assert "CONFIG_MODULES=y" in config
    # x86's bzImage carries its release uncompressed in the setup header's version string.
    vmlinuz = f"{names['set_dir']}/vmlinuz"
    host.check_output(f"dpkg-deb --fsys-tarfile {deb} | tar -xOf - ./boot/vmlinuz-{release} > {vmlinuz}")
    assert host.run(f"grep -a -c -F {shlex.quote(release)} {vmlinuz}").stdout.strip() != "0"
    host.check_output(f"rm -f {vmlinuz}")


def test_headers_package_is_for_this_release(host, names):
    listing = host.check_output(f"dpkg-deb --contents {names['set_dir']}/{names['debs']['headers']}")
    assert f"./usr/src/linux-headers-{names['release']}/Makefile" in listing
    assert f"./lib/modules/{names['release']}/build" in listing


def test_packages_fetched_with_their_description(host, names):
    release_dir = FETCH_DIR / names["release"]
    assert release_dir.is_dir(), f"{release_dir} missing; {FETCH_DIR} holds {os.listdir(FETCH_DIR)}"
    assert sorted(p.name for p in release_dir.glob("*.deb")) == sorted(names["debs"][k] for k in ("image", "headers"))
    manifest = json.loads((release_dir / "kernel.json").read_text())
    assert manifest["release"] == names["release"]
    assert manifest["version"] == names["version"]
    assert manifest["packages"] == names["install"]
    assert manifest["suffix"] == names["suffix"]
    assert manifest["identity"] == names["identity"]
    for deb, digest in manifest["debs"].items():
        assert sha256(release_dir / deb) == digest
        # The same bytes as on the build host.
        assert host.check_output(f"sha256sum {names['set_dir']}/{deb}").split()[0] == digest


def test_tree_marker_names_the_patch_set(host, names):
    marker = json.loads(host.file(f"{names['set_dir']}/linux/.wgmesh-tree.json").content_string)
    assert marker["id"] == names["suffix"]
    assert marker["patches"] == ["0001-" + PATCHES[0].name, "0002-" + PATCHES[1].name]


def test_patch_that_does_not_apply_fails_naming_itself(host, names):
    result_file = EPHEMERAL / "bad-patch.json"
    assert result_file.exists(), "side_effect.yml's run with the bad patch did not fail (no bad-patch.json)"
    result = json.loads(result_file.read_text())
    msg = result["msg"]
    print(f"the failure: {result['task']}: {msg.splitlines()[0]}")
    assert "patch 3 of 3" in msg
    assert "0003-does-not-apply.patch" in msg
    assert "does not apply" in msg
    assert "FAILED" in msg  # patch's own words
    # Its patch set got a directory of its own, with no packages and no marker: a rerun starts over.
    sets = host.check_output(f"ls {BUILD_DIR}").split()
    others = [s for s in sets if s not in ("sources", names["set_dir"].rsplit("/", 1)[1])]
    assert len(others) == 1, sets
    other = f"{BUILD_DIR}/{others[0]}"
    assert not host.file(f"{other}/linux/.wgmesh-tree.json").exists
    assert host.run(f"ls {other}/*.deb").rc != 0
