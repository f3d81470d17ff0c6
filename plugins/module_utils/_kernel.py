# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Patched kernel packages: the one place of the naming rule (docs/kernel.md).

- The suffix that names a patch set: ``-<label>.<fp8>``, where fp8 is the start of a
  sha256 over the build's identity (source, architecture, config base, the patches and the
  config fragments, in order). It is the kernel's LOCALVERSION.
- The kernel release is the source's kernel version plus that suffix (6.1.176-wgmesh.1a2b3c4d),
  as ``make kernelrelease`` prints it when CONFIG_LOCALVERSION is empty and
  CONFIG_LOCALVERSION_AUTO is off (the kernel_build role sets both).
- ``make bindeb-pkg`` (scripts/package/mkdebian, Linux 6.1) names its packages
  linux-image-<release> and linux-headers-<release> (the latter only with CONFIG_MODULES),
  plus linux-libc-dev, all of version KDEB_PKGVERSION = <release>-<revision>, in files
  <package>_<version>_<debian arch>.deb.

The kernel_build role uses this to build and check its packages; the gateway role is to use
the same names to install them (filters kernel_suffix and kernel_packages).
Also here: reading a tree's kernel version and checking config fragments against a .config,
for the kernel_tree module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import re

# Bump when the identity's meaning changes, so the same inputs name a new build.
NAMING_RULE = "freifunk.wgmesh kernel 1"
FINGERPRINT_CHARS = 8
# The human part of the suffix: lowercase letters and digits (a Debian package name allows
# more, a kernel release almost anything; this fits both and reads well in `uname -r`).
LABEL_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
# Debian revision (the part after the last hyphen of the version).
REVISION_RE = re.compile(r"^[0-9][A-Za-z0-9.+~]*$")
# A kernel release that is also valid in a Debian package name (lowercase, digits, + - .).
RELEASE_RE = re.compile(r"^[0-9][a-z0-9.+-]*$")
# The kernel's utsname release field holds 64 bytes.
RELEASE_MAX = 64
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
IDENTITY_KEYS = ("source", "arch", "config", "patches", "fragments")

# Debian architecture -> the kernel's ARCH for make (mkdebian maps them back the same way).
MAKE_ARCH = {
    "amd64": "x86_64",
    "i386": "i386",
    "arm64": "arm64",
    "armhf": "arm",
    "ppc64el": "powerpc",
    "riscv64": "riscv",
    "s390x": "s390",
}


def _check_identity(identity):
    if not isinstance(identity, dict):
        raise ValueError(
            "the kernel build identity must be a dict with %s, got %r" % (", ".join(IDENTITY_KEYS), identity)
        )
    unknown = sorted(set(identity) - set(IDENTITY_KEYS))
    missing = [k for k in IDENTITY_KEYS if k not in identity]
    if unknown or missing:
        raise ValueError(
            "the kernel build identity needs exactly the keys %s (missing: %s; unknown: %s)"
            % (", ".join(IDENTITY_KEYS), ", ".join(missing) or "none", ", ".join(unknown) or "none")
        )
    for key in ("source", "arch", "config"):
        if not isinstance(identity[key], str) or not identity[key]:
            raise ValueError("kernel build identity: %s must be a non-empty string, got %r" % (key, identity[key]))
    for key in ("patches", "fragments"):
        value = identity[key]
        if not isinstance(value, (list, tuple)):
            raise ValueError("kernel build identity: %s must be a list of sha256 digests, got %r" % (key, value))
        for index, digest in enumerate(value):
            if not isinstance(digest, str) or not SHA256_RE.match(digest):
                raise ValueError(
                    "kernel build identity: %s[%d] must be a sha256 digest (64 lowercase hex digits), got %r"
                    % (key, index, digest)
                )


def fingerprint(identity):
    """Full sha256 hex digest of a build identity; the same inputs in the same order give the same digest."""
    _check_identity(identity)
    canonical = dict(
        (key, list(identity[key]) if key in ("patches", "fragments") else identity[key]) for key in IDENTITY_KEYS
    )
    canonical["rule"] = NAMING_RULE
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_label(label):
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise ValueError(
            "the kernel label must be 1 to 16 lowercase letters and digits, starting with a letter; got %r" % (label,)
        )
    return label


def suffix(identity, label):
    """The LOCALVERSION that names the patch set: -<label>.<first 8 hex digits of the fingerprint>."""
    check_label(label)
    return "-%s.%s" % (label, fingerprint(identity)[:FINGERPRINT_CHARS])


def check_release(release):
    if not isinstance(release, str) or not RELEASE_RE.match(release):
        raise ValueError(
            "kernel release %r is not usable in a Debian package name: it must start with a digit and hold only"
            " lowercase letters, digits and . + -" % (release,)
        )
    if len(release) > RELEASE_MAX:
        raise ValueError(
            "kernel release %r is %d characters long; the kernel allows %d" % (release, len(release), RELEASE_MAX)
        )
    return release


def packages(release, arch, revision="1"):
    """Names of the packages `make bindeb-pkg` builds for ``release`` and of their .deb files.

    ``install`` lists what a gateway installs: the image and the headers (for DKMS modules).
    """
    check_release(release)
    if arch not in MAKE_ARCH:
        raise ValueError(
            "Debian architecture %r is not one kernel_build knows; expected one of %s"
            % (arch, ", ".join(sorted(MAKE_ARCH)))
        )
    if not isinstance(revision, str) or not REVISION_RE.match(revision):
        raise ValueError(
            "Debian revision %r must start with a digit and hold only letters, digits and . + ~" % (revision,)
        )
    version = "%s-%s" % (release, revision)
    names = {
        "image": "linux-image-%s" % release,
        "headers": "linux-headers-%s" % release,
        "libc_dev": "linux-libc-dev",
    }
    return {
        "release": release,
        "version": version,
        "arch": arch,
        "make_arch": MAKE_ARCH[arch],
        "packages": names,
        "install": [names["image"], names["headers"]],
        "debs": dict((kind, "%s_%s_%s.deb" % (name, version, arch)) for kind, name in names.items()),
    }


_MAKEFILE_VAR_RE = re.compile(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)[ \t]*=[ \t]*(\S*)[ \t]*$", re.M)


def makefile_kernelversion(text):
    """The kernel version the top Makefile states, as `make kernelversion` prints it."""
    found = {}
    for name, value in _MAKEFILE_VAR_RE.findall(text):
        found.setdefault(name, value)
    if not found.get("VERSION"):
        raise ValueError("no VERSION = line in the Makefile: not a Linux source tree?")
    version = found["VERSION"]
    if found.get("PATCHLEVEL"):
        version += "." + found["PATCHLEVEL"]
        if found.get("SUBLEVEL"):
            version += "." + found["SUBLEVEL"]
    return version + found.get("EXTRAVERSION", "")


_CONFIG_SET_RE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_CONFIG_UNSET_RE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_config(text, source="config"):
    """Dict option -> value ('n' for "is not set") of a .config or a fragment; ValueError naming a bad line."""
    options = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        match = _CONFIG_SET_RE.match(line)
        if match:
            options[match.group(1)] = match.group(2)
            continue
        match = _CONFIG_UNSET_RE.match(line)
        if match:
            options[match.group(1)] = "n"
            continue
        if line and not line.startswith("#"):
            raise ValueError(
                "%s line %d is not a kernel config line (CONFIG_X=value or '# CONFIG_X is not set'): %r"
                % (source, number, line)
            )
    return options


def fragments_mismatches(fragments, config):
    """Options the fragments ask for that the final .config does not have: [(fragment, option, wanted, got)].

    ``fragments`` is [(name, text)] in merge order; a later fragment's value wins, as with
    merge_config.sh. An option missing from the .config (Kconfig leaves out invisible symbols)
    matches 'n' and an empty string; otherwise it is reported as 'not set'.
    """
    wanted = {}
    for name, text in fragments:
        for option, value in parse_config(text, "config fragment %s" % name).items():
            wanted[option] = (name, value)
    have = parse_config(config, ".config")
    missing = []
    for option, (name, value) in sorted(wanted.items()):
        got = have.get(option)
        if got is None and value in ("n", '""'):
            continue
        if got != value:
            missing.append((name, option, value, "not set" if got is None else got))
    return missing
