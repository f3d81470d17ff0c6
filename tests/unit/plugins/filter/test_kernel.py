"""kernel_suffix / kernel_packages: the suffix that names a patch set, and the package names."""

import hashlib
import json
import re
import subprocess

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.filter.kernel import kernel_packages, kernel_suffix
from ansible_collections.freifunk.wgmesh.plugins.module_utils import _kernel

A = "a" * 64
B = "b" * 64
C = "c" * 64


def identity(**changes):
    base = {
        "source": "debian:linux-source-6.1=6.1.176-1",
        "arch": "amd64",
        "config": "tinyconfig",
        "patches": [A, B],
        "fragments": [C],
    }
    base.update(changes)
    return base


def test_same_input_same_suffix():
    assert kernel_suffix(identity()) == kernel_suffix(identity())
    assert kernel_suffix(identity(), "wgmesh") == kernel_suffix(dict(reversed(list(identity().items()))), "wgmesh")
    assert re.fullmatch(r"-wgmesh\.[0-9a-f]{8}", kernel_suffix(identity()))


def test_the_documented_rule_and_a_pinned_vector():
    # docs/kernel.md: sha256 over the compact, key-sorted JSON of the identity plus the rule's name.
    canonical = json.dumps(dict(identity(), rule="freifunk.wgmesh kernel 1"), sort_keys=True, separators=(",", ":"))
    assert kernel_suffix(identity()) == "-wgmesh." + hashlib.sha256(canonical.encode()).hexdigest()[:8]
    # Pinned: a change to the rule must be deliberate (and bump NAMING_RULE).
    assert kernel_suffix(identity()) == "-wgmesh.79cb652a"


def test_order_of_patches_matters():
    assert kernel_suffix(identity(patches=[A, B])) != kernel_suffix(identity(patches=[B, A]))
    assert kernel_suffix(identity(fragments=[A, C])) != kernel_suffix(identity(fragments=[C, A]))


@pytest.mark.parametrize(
    "changes",
    [
        {"source": "debian:linux-source-6.1=6.1.176-2"},
        {"arch": "arm64"},
        {"config": "defconfig"},
        {"patches": [A]},
        {"patches": [A, B, C]},
        {"fragments": []},
        # A patch moved into the fragments is another build.
        {"patches": [A, B, C], "fragments": []},
    ],
)
def test_every_input_changes_the_suffix(changes):
    assert kernel_suffix(identity(**changes)) != kernel_suffix(identity())


def test_label_is_the_human_part():
    assert kernel_suffix(identity(), "wggro").startswith("-wggro.")
    assert kernel_suffix(identity(), "wggro")[-8:] == kernel_suffix(identity())[-8:]


@pytest.mark.parametrize("label", ["", "WG", "9gro", "wg-gro", "wg.gro", "a" * 17])
def test_bad_label_fails_naming_it(label):
    with pytest.raises(AnsibleFilterError, match="kernel label must be"):
        kernel_suffix(identity(), label)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"patches": ["abc"]}, r"patches\[0\] must be a sha256 digest"),
        ({"patches": [A.upper()]}, r"patches\[0\] must be a sha256 digest"),
        ({"fragments": "c" * 64}, "fragments must be a list"),
        ({"source": ""}, "source must be a non-empty string"),
        ({"extra": 1}, "unknown: extra"),
    ],
)
def test_bad_identity_fails_naming_the_field(bad, message):
    with pytest.raises(AnsibleFilterError, match=message):
        kernel_suffix(identity(**bad))


def test_missing_identity_key():
    broken = identity()
    del broken["arch"]
    with pytest.raises(AnsibleFilterError, match="missing: arch"):
        kernel_suffix(broken)


def test_package_names():
    release = "6.1.176" + kernel_suffix(identity())
    names = kernel_packages(release, "amd64", "1")
    assert names["packages"] == {
        "image": "linux-image-" + release,
        "headers": "linux-headers-" + release,
        "libc_dev": "linux-libc-dev",
    }
    assert names["install"] == ["linux-image-" + release, "linux-headers-" + release]
    assert names["version"] == release + "-1"
    assert names["debs"]["image"] == "linux-image-%s_%s-1_amd64.deb" % (release, release)
    assert names["debs"]["headers"] == "linux-headers-%s_%s-1_amd64.deb" % (release, release)
    assert names["debs"]["libc_dev"] == "linux-libc-dev_%s-1_amd64.deb" % release
    assert names["make_arch"] == "x86_64"
    assert kernel_packages(release, "arm64")["make_arch"] == "arm64"


def test_suffix_makes_a_valid_release_and_debian_version():
    """The suffix is a valid LOCALVERSION (the release stays a Debian package name part) and the version
    is a Debian version: dpkg itself is asked when it is there."""
    release = "6.1.176" + kernel_suffix(identity())
    names = kernel_packages(release)
    assert re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", names["packages"]["image"])  # Debian policy 5.6.1
    assert len(release) <= 64  # the kernel's utsname release
    try:
        r = subprocess.run(
            ["dpkg", "--validate-version", names["version"]], capture_output=True, text=True, check=False
        )
        p = subprocess.run(
            ["dpkg", "--validate-pkgname", names["packages"]["image"]], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        pytest.skip("dpkg is not installed here; the regex checks above ran")
    assert r.returncode == 0, r.stderr
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize(
    "release, message",
    [
        ("6.1.176-WGmesh.1", "not usable in a Debian package name"),
        ("v6.1", "not usable in a Debian package name"),
        ("6.1.176_x", "not usable in a Debian package name"),
        ("6." + "1" * 70, "the kernel allows 64"),
    ],
)
def test_bad_release_fails(release, message):
    with pytest.raises(AnsibleFilterError, match=message):
        kernel_packages(release)


def test_bad_arch_and_revision_fail():
    with pytest.raises(AnsibleFilterError, match="architecture 'x86_64' is not one"):
        kernel_packages("6.1.176", "x86_64")
    with pytest.raises(AnsibleFilterError, match="Debian revision 'r1'"):
        kernel_packages("6.1.176", "amd64", "r1")


@pytest.mark.parametrize(
    "makefile, version",
    [
        ("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 176\nEXTRAVERSION =\nNAME = Curry Ramen\n", "6.1.176"),
        ("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 0\nEXTRAVERSION = -rc3\n", "6.12.0-rc3"),
        ("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL =\nEXTRAVERSION =\n", "6.1"),
    ],
)
def test_makefile_kernelversion(makefile, version):
    assert _kernel.makefile_kernelversion("# SPDX-License-Identifier: GPL-2.0\n" + makefile) == version


def test_makefile_without_version():
    with pytest.raises(ValueError, match="not a Linux source tree"):
        _kernel.makefile_kernelversion("all:\n\ttrue\n")


def test_fragments_mismatches():
    config = 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S="x"\nCONFIG_LOCALVERSION=""\n'
    fragments = [
        ("one.config", "CONFIG_A=y\nCONFIG_B=y\nCONFIG_GONE=y\n"),
        # A later fragment wins, as with merge_config.sh.
        ("two.config", '# CONFIG_B is not set\nCONFIG_S="y"\n# CONFIG_ABSENT is not set\nCONFIG_EMPTY=""\n'),
    ]
    assert _kernel.fragments_mismatches(fragments, config) == [
        ("one.config", "CONFIG_GONE", "y", "not set"),
        ("two.config", "CONFIG_S", '"y"', '"x"'),
    ]


def test_fragment_with_a_bad_line_names_it():
    with pytest.raises(ValueError, match=r"config fragment f.config line 2 is not a kernel config line.*'CONFIG_A y'"):
        _kernel.fragments_mismatches([("f.config", "# ok\nCONFIG_A y\n")], "")
