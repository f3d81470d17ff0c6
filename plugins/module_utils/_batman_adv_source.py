# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stage a batman-adv source for DKMS, on the controller (module batman_adv_source).

Steps, in this order (docs/batman-adv.md):

1. Fetch: a release tarball (URL or controller path, with a required sha256), a git ref
   (repository URL or local path; the commit is recorded) or a directory on the controller.
   Tarballs and git mirrors are cached under the cache directory.
2. Check the pinned version against ``BATADV_SOURCE_VERSION`` in ``net/batman-adv/main.h``,
   before any patch.
3. Apply the patch series in order with ``patch -p1 --batch --forward --fuzz=0``; a patch that
   does not apply fails naming itself, with patch's output.
4. Recognize the shape: an open-mesh release (a top-level ``Makefile`` that takes
   ``KERNELPATH``) or an in-tree-shaped ``net/batman-adv`` (only the kernel's Kbuild
   ``Makefile``), and write the build files: ``wgmesh.mk`` for a release (its Makefile with the
   ``CONFIG_BATMAN_ADV_*`` options), a top-level ``Makefile`` for an in-tree tree (kbuild with
   ``M=``; the same options for the object list and, through ``wgmesh-config.h``, for the C
   code), and ``WGMESH-PATCHES`` (the patch series: sha256 and name, in order).
5. Fingerprint: the sha256 of a deterministic tar of that tree (sorted names, mtime 0, owner
   0/0, modes 0644/0755). Equal trees give equal fingerprints, whether they came from a
   tarball, git or a path.
6. Stamp: the package version is ``<source version after patches>+wgmesh.<fingerprint[:12]>``;
   it replaces the string in ``main.h`` (so the loaded module's ``/sys/module/batman_adv/version``
   names the build, and its srcversion differs from the in-tree module's) and is DKMS's
   ``PACKAGE_VERSION`` in the ``dkms.conf`` written beside it.
7. Pack the stamped tree (top directory ``batman-adv-<package version>/``) as a deterministic
   ``.tar.gz`` into the cache; an archive already there with the same bytes is left alone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile

PACKAGE_NAME = "batman-adv"
MAIN_H = "net/batman-adv/main.h"
KBUILD_MAKEFILE = "net/batman-adv/Makefile"
KCONFIG = "net/batman-adv/Kconfig"
PATCH_LIST = "WGMESH-PATCHES"
RELEASE_WRAPPER = "wgmesh.mk"
# What the generated files are called; none of them may already be in a source.
GENERATED = ("dkms.conf", PATCH_LIST, RELEASE_WRAPPER, "wgmesh-config.h")
# The sub-options of batman-adv (net/batman-adv/Kconfig of Linux 6.1 and open-mesh releases
# since 2021); a source's own Kconfig, when it has one, is asked first.
KNOWN_OPTIONS = (
    "CONFIG_BATMAN_ADV_BATMAN_V",
    "CONFIG_BATMAN_ADV_BLA",
    "CONFIG_BATMAN_ADV_DAT",
    "CONFIG_BATMAN_ADV_NC",
    "CONFIG_BATMAN_ADV_MCAST",
    "CONFIG_BATMAN_ADV_DEBUG",
    "CONFIG_BATMAN_ADV_TRACING",
)
VERSION_RE = re.compile(r'^(#define[ \t]+BATADV_SOURCE_VERSION[ \t]+)"([^"\n]*)"', re.MULTILINE)
# A DKMS version is a directory name and a make/shell word: keep it to these.
PACKAGE_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~+-]*$")
CHECKSUM_RE = re.compile(r"^sha256:([0-9a-f]{64})$")
FINGERPRINT_LEN = 12
CHUNK = 1 << 16


class StageError(Exception):
    """A staging step failed; the message says which and why."""


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(argv, cwd=None):
    """Run a command; return (rc, combined output)."""
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def _must(argv, what, cwd=None):
    rc, out = _run(argv, cwd=cwd)
    if rc != 0:
        raise StageError("%s failed (%s, rc=%d): %s" % (what, " ".join(argv), rc, out.strip()))
    return out


# --- 1. fetch ---------------------------------------------------------------------------


def parse_checksum(checksum):
    match = CHECKSUM_RE.match(checksum or "")
    if not match:
        raise StageError(
            "a tarball needs checksum: sha256:<64 lowercase hex digits> (got %r); "
            "take it from the release's sha256 file or `sha256sum`" % (checksum,)
        )
    return match.group(1)


def fetch_tarball(url, checksum, cache_dir, opener=None):
    """The verified tarball in the cache (downloaded or copied once); returns its path.

    url: http(s):// or file:// URL, or a path on the controller. opener(url) returns a
    readable response (Ansible's open_url in the module).
    """
    want = parse_checksum(checksum)
    directory = os.path.join(cache_dir, "tarballs")
    os.makedirs(directory, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rstrip("/").rsplit("/", 1)[-1]) or "source"
    cached = os.path.join(directory, "%s-%s" % (want[:16], name))
    if os.path.isfile(cached) and _sha256_file(cached) == want:
        return cached
    fd, partial = tempfile.mkstemp(prefix=".fetch.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            if "://" not in url or url.startswith("file://"):
                path = url[len("file://") :] if url.startswith("file://") else url
                try:
                    with open(path, "rb") as src:
                        shutil.copyfileobj(src, out, CHUNK)
                except (IOError, OSError) as exc:
                    raise StageError("cannot read the tarball %s on the controller: %s" % (path, exc)) from None
            else:
                if opener is None:
                    raise StageError("no way to download %s" % url)
                try:
                    response = opener(url)
                    shutil.copyfileobj(response, out, CHUNK)
                except StageError:
                    raise
                except Exception as exc:  # open_url raises several kinds; all mean "not fetched"
                    raise StageError("cannot download %s: %s" % (url, exc)) from None
        got = _sha256_file(partial)
        if got != want:
            raise StageError("checksum mismatch for %s: expected sha256:%s, got sha256:%s" % (url, want, got))
        os.rename(partial, cached)
        partial = None
    finally:
        if partial and os.path.exists(partial):
            os.unlink(partial)
    return cached


def _normalized(name):
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _extract(archive, dest, members=None):
    """Unpack with tarfile's "data" filter: no absolute paths, no links out of dest, no devices."""
    if not hasattr(tarfile, "data_filter"):
        raise StageError("this Python has no tarfile extraction filters (3.8.17, 3.9.17, 3.10.12, 3.11.4 or later)")
    archive.extractall(dest, members=members, filter="data")


def extract_tarball(path, dest):
    """Unpack a tarball into dest; a single top directory above net/ (batman-adv-<ver>/) is stripped."""
    try:
        with tarfile.open(path) as archive:
            members = [m for m in archive.getmembers() if _normalized(m.name) not in ("", ".")]
            for member in members:
                member.name = _normalized(member.name)
            names = {m.name for m in members}
            tops = {name.split("/", 1)[0] for name in names}
            # Strip the top directory when net/batman-adv/ is below it, not at the root.
            strip = MAIN_H not in names and len(tops) == 1 and "%s/%s" % (tops.pop(), MAIN_H) in names
            kept = []
            for member in members:
                if strip:
                    if "/" not in member.name:
                        continue
                    member.name = member.name.split("/", 1)[1]
                    if member.islnk():
                        # A hard link names its target by archive path: strip that too.
                        member.linkname = _normalized(member.linkname).split("/", 1)[-1]
                kept.append(member)
            _extract(archive, dest, kept)
    except (tarfile.TarError, IOError, OSError) as exc:
        raise StageError("cannot unpack %s: %s" % (path, exc)) from None


def _git(args, git_dir=None):
    argv = ["git", "-c", "core.autocrlf=false"]
    if git_dir:
        argv += ["--git-dir", git_dir]
    return argv + list(args)


def git_export(repo, ref, cache_dir, dest):
    """Export `ref` of `repo` (URL or controller path) into dest; returns the commit.

    A bare mirror per repository is kept in the cache; it is fetched unless `ref` is a full
    commit id it already holds (so a pinned commit builds offline).
    """
    if not ref:
        raise StageError("a git source needs a ref (tag, branch or commit) to pin")
    key = hashlib.sha256(repo.encode("utf-8")).hexdigest()[:16]
    mirror = os.path.join(cache_dir, "git", key + ".git")
    if not os.path.isdir(mirror):
        os.makedirs(os.path.dirname(mirror), exist_ok=True)
        _must(_git(["clone", "--quiet", "--mirror", repo, mirror]), "cloning %s" % repo)
    elif not (re.match(r"^[0-9a-f]{40}$", ref) and _run(_git(["cat-file", "-e", ref + "^{commit}"], mirror))[0] == 0):
        _must(_git(["fetch", "--quiet", "--prune", "--force", "origin"], mirror), "fetching %s" % repo)
    rc, out = _run(_git(["rev-parse", "--verify", "--quiet", ref + "^{commit}"], mirror))
    if rc != 0:
        raise StageError("ref %r is not a commit, tag or branch of %s" % (ref, repo))
    commit = out.strip()
    tar = os.path.join(dest + ".git-archive.tar")
    try:
        _must(_git(["archive", "--format=tar", "-o", tar, commit], mirror), "exporting %s of %s" % (commit, repo))
        os.makedirs(dest, exist_ok=True)
        with tarfile.open(tar) as archive:
            _extract(archive, dest)
    finally:
        if os.path.exists(tar):
            os.unlink(tar)
    return commit


def copy_path(path, dest):
    """Copy a directory on the controller (without .git) into dest."""
    if not os.path.isdir(path):
        raise StageError("source path %s is not a directory on the controller" % path)
    shutil.copytree(path, dest, symlinks=True, ignore=shutil.ignore_patterns(".git"))


# --- 2./3. version and patches ------------------------------------------------------------


def read_version(tree):
    path = os.path.join(tree, MAIN_H)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except (IOError, OSError):
        raise StageError(
            "not a batman-adv source: %s is missing (the tree must hold net/batman-adv/)" % MAIN_H
        ) from None
    match = VERSION_RE.search(text)
    if not match:
        raise StageError('%s has no #define BATADV_SOURCE_VERSION "..."' % MAIN_H)
    return match.group(2)


def apply_patches(tree, patches):
    """Apply each patch in order; fail naming the first that does not apply."""
    for number, patch in enumerate(patches, 1):
        if not os.path.isfile(patch):
            raise StageError("patch %d, %s, is not a file on the controller" % (number, patch))
        rc, out = _run(
            [
                "patch",
                "-p1",
                "--batch",
                "--forward",
                "--fuzz=0",
                "--no-backup-if-mismatch",
                "--reject-file=-",
                "--directory",
                tree,
                "--input",
                os.path.abspath(patch),
            ]
        )
        if rc != 0:
            raise StageError(
                "patch %d of %d, %s, does not apply to the source (patch -p1 --forward --fuzz=0 said): %s"
                % (number, len(patches), os.path.basename(patch), out.strip())
            )


# --- 4. shape and build files ---------------------------------------------------------------


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def detect_shape(tree):
    """'release' (open-mesh tarball: top Makefile with KERNELPATH) or 'in-tree' (kernel's net/batman-adv)."""
    kbuild = _read(os.path.join(tree, KBUILD_MAKEFILE))
    if kbuild is None:
        raise StageError("not a batman-adv source: %s is missing" % KBUILD_MAKEFILE)
    top = _read(os.path.join(tree, "Makefile"))
    if top is not None:
        if "KERNELPATH" in top:
            return "release"
        raise StageError(
            "unknown source shape: a top-level Makefile that does not take KERNELPATH (an open-mesh release's does); "
            "give the release tarball, or a tree with net/batman-adv/ and no top-level Makefile"
        )
    if re.search(r"^obj-\$\(CONFIG_BATMAN_ADV\)\s*\+?=\s*batman-adv\.o", kbuild, re.MULTILINE):
        return "in-tree"
    raise StageError(
        "unknown source shape: %s is not the kernel's Kbuild file (no obj-$(CONFIG_BATMAN_ADV))" % KBUILD_MAKEFILE
    )


def known_options(tree):
    """CONFIG_ names the source's Kconfig declares, or KNOWN_OPTIONS without one."""
    kconfig = _read(os.path.join(tree, KCONFIG))
    if kconfig is None:
        return set(KNOWN_OPTIONS)
    names = set("CONFIG_" + name for name in re.findall(r"^config\s+(BATMAN_ADV_\w+)", kconfig, re.MULTILINE))
    return names or set(KNOWN_OPTIONS)


def check_options(tree, options):
    known = known_options(tree)
    unknown = sorted(set(options) - known)
    if unknown:
        raise StageError(
            "unknown batman-adv option(s) %s; this source knows %s" % (", ".join(unknown), ", ".join(sorted(known)))
        )


def _yn(value):
    return "y" if value else "n"


def in_tree_makefile(options, uapi_headers):
    names = sorted(options)
    lines = [
        "# Generated by freifunk.wgmesh (batman_adv_source): builds the in-tree-shaped",
        "# net/batman-adv as an external module with kbuild (M=), like an open-mesh release:",
        "#   make KERNELPATH=/lib/modules/<kernel>/build",
        "KERNELPATH ?= /lib/modules/$(shell uname -r)/build",
        "TOP := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))",
        "",
        "# These decide both the object list (net/batman-adv/Makefile reads them as make",
        "# variables) and what the C code sees: wgmesh-config.h, made from them below and",
        "# included after the kernel's autoconf.h, so the two always agree.",
    ]
    lines += ["%s := %s" % (name, _yn(options[name])) for name in names]
    lines += [
        "BATMAN_ADV_OPTIONS := %s" % " ".join(names),
        "",
        "KBUILD_ARGS := M=$(TOP)/net/batman-adv CONFIG_BATMAN_ADV=m \\",
        "\t$(foreach o,$(BATMAN_ADV_OPTIONS),$(o)=$($(o))) \\",
        '\tKCFLAGS="-include $(TOP)/wgmesh-config.h"',
    ]
    if uapi_headers:
        lines += [
            "# The tree's own UAPI headers (include/uapi/linux/batadv_packet.h, batman_adv.h)",
            "# before the kernel's, as in an open-mesh release; -nostdinc is what kbuild (5.15+) puts there.",
            'KBUILD_ARGS += NOSTDINC_FLAGS="-nostdinc -I$(TOP)/include"',
        ]
    lines += [
        "",
        "all: $(TOP)/wgmesh-config.h",
        "\t$(MAKE) -C $(KERNELPATH) $(KBUILD_ARGS) modules",
        "",
        "$(TOP)/wgmesh-config.h: FORCE",
        "\t@printf '%s\\n' '/* Generated by the top-level Makefile from its CONFIG_BATMAN_ADV_* values. */' \\",
        "\t\t'#undef CONFIG_BATMAN_ADV' '#undef CONFIG_BATMAN_ADV_MODULE' '#define CONFIG_BATMAN_ADV_MODULE 1' \\",
        "\t\t$(foreach o,$(BATMAN_ADV_OPTIONS),'#undef $(o)' $(if $(filter y,$($(o))),'#define $(o) 1')) > $@",
        "",
        "clean:",
        "\t$(MAKE) -C $(KERNELPATH) $(KBUILD_ARGS) clean",
        "\trm -f $(TOP)/wgmesh-config.h",
        "",
        ".PHONY: all clean FORCE",
        "",
    ]
    return "\n".join(lines)


def release_wrapper(options):
    args = " ".join("%s=%s" % (name, _yn(options[name])) for name in sorted(options))
    return "\n".join(
        [
            "# Generated by freifunk.wgmesh (batman_adv_source): the open-mesh release's Makefile",
            "# with the CONFIG_BATMAN_ADV_* options from the inventory (dkms.conf runs this).",
            "KERNELPATH ?= /lib/modules/$(shell uname -r)/build",
            "OPTIONS := %s" % args,
            "",
            "all clean:",
            "\t$(MAKE) -f Makefile KERNELPATH=$(KERNELPATH) $(OPTIONS) $@",
            "",
            ".PHONY: all clean",
            "",
        ]
    )


def patch_list(patches):
    return "".join("%s  %s\n" % (_sha256_file(p), os.path.basename(p)) for p in patches)


def write_build_files(tree, shape, options, patches):
    for name in GENERATED:
        if os.path.lexists(os.path.join(tree, name)):
            raise StageError("the source already has %s, which staging writes; remove it from the source" % name)
    files = {PATCH_LIST: patch_list(patches)}
    if shape == "in-tree":
        uapi = os.path.isfile(os.path.join(tree, "include/uapi/linux/batman_adv.h"))
        files["Makefile"] = in_tree_makefile(options, uapi)
    else:
        files[RELEASE_WRAPPER] = release_wrapper(options)
    for name, text in files.items():
        with open(os.path.join(tree, name), "w", encoding="utf-8") as handle:
            handle.write(text)


# --- 5./7. deterministic archives -------------------------------------------------------------


def _entries(tree):
    """(relative path, absolute path) of every entry below tree, sorted by path."""
    out = []
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            full = os.path.join(root, name)
            out.append((os.path.relpath(full, tree).replace(os.sep, "/"), full))
    return sorted(out)


def deterministic_tar(tree, prefix=""):
    """The tree as tar bytes that depend only on names, contents, symlinks and the x bit."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as archive:
        if prefix:
            info = tarfile.TarInfo(prefix)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for rel, full in _entries(tree):
            info = tarfile.TarInfo(prefix + "/" + rel if prefix else rel)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(full), 0o777
                archive.addfile(info)
            elif stat.S_ISDIR(st.st_mode):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                info.size = st.st_size
                with open(full, "rb") as handle:
                    archive.addfile(info, handle)
            else:
                raise StageError("%s is neither a file, a directory nor a symlink" % rel)
    return buf.getvalue()


def fingerprint(tree):
    return hashlib.sha256(deterministic_tar(tree)).hexdigest()


def _gzip(data):
    buf = io.BytesIO()
    # mtime=0 and no file name: the bytes depend on the data only.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as handle:
        handle.write(data)
    return buf.getvalue()


# --- 6. stamp and dkms.conf -----------------------------------------------------------------


def stamp_version(tree, package_version):
    path = os.path.join(tree, MAIN_H)
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        text = handle.read()
    text = VERSION_RE.sub(lambda m: '%s"%s"' % (m.group(1), package_version), text, count=1)
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(text)


def dkms_conf(package_version, shape):
    make = "make KERNELPATH=${kernel_source_dir}"
    if shape == "release":
        make = "make -f %s KERNELPATH=${kernel_source_dir}" % RELEASE_WRAPPER
    return "\n".join(
        [
            "# Generated by freifunk.wgmesh (batman_adv_source); docs/batman-adv.md.",
            'PACKAGE_NAME="%s"' % PACKAGE_NAME,
            'PACKAGE_VERSION="%s"' % package_version,
            'MAKE[0]="%s"' % make,
            'CLEAN="%s clean"' % make,
            'BUILT_MODULE_NAME[0]="batman-adv"',
            'BUILT_MODULE_LOCATION[0]="net/batman-adv"',
            'DEST_MODULE_LOCATION[0]="/updates/dkms"',
            'AUTOINSTALL="yes"',
            "",
        ]
    )


# --- all together ---------------------------------------------------------------------------


def stage(params, cache_dir, opener=None):
    """Stage one source; returns the result dict of the module (see its RETURN)."""
    kind = params["kind"]
    version = params["version"]
    patches = list(params.get("patches") or [])
    options = dict(params.get("config") or {})
    if not version:
        raise StageError("version must be the pinned batman-adv version, e.g. 2022.3")
    for patch in patches:
        if not os.path.isfile(patch):
            raise StageError("patch %s is not a file on the controller" % patch)
    os.makedirs(cache_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".stage.", dir=cache_dir)
    result = {"kind": kind, "commit": None}
    try:
        tree = os.path.join(work, "tree")
        if kind == "tarball":
            tarball = fetch_tarball(params["url"], params.get("checksum"), cache_dir, opener)
            os.makedirs(tree)
            extract_tarball(tarball, tree)
        elif kind == "git":
            result["commit"] = git_export(params["repo"], params.get("ref"), cache_dir, tree)
        elif kind == "path":
            copy_path(params["path"], tree)
        else:
            raise StageError("unknown source kind %r (tarball, git or path)" % (kind,))

        found = read_version(tree)
        if found != version:
            raise StageError(
                "the source is batman-adv %s (BATADV_SOURCE_VERSION in %s), not the pinned %s"
                % (found, MAIN_H, version)
            )
        apply_patches(tree, patches)
        source_version = read_version(tree)
        shape = detect_shape(tree)
        check_options(tree, options)
        write_build_files(tree, shape, options, patches)

        full = fingerprint(tree)
        package_version = "%s+wgmesh.%s" % (source_version, full[:FINGERPRINT_LEN])
        if not PACKAGE_VERSION_RE.match(package_version):
            raise StageError(
                "after the patches the source's version is %r; a DKMS version allows only letters, digits and ._~+-"
                % source_version
            )
        stamp_version(tree, package_version)
        with open(os.path.join(tree, "dkms.conf"), "w", encoding="utf-8") as handle:
            handle.write(dkms_conf(package_version, shape))

        top = "%s-%s" % (PACKAGE_NAME, package_version)
        data = _gzip(deterministic_tar(tree, prefix=top))
        staged_dir = os.path.join(cache_dir, "staged")
        os.makedirs(staged_dir, exist_ok=True)
        archive = os.path.join(staged_dir, top + ".tar.gz")
        digest = hashlib.sha256(data).hexdigest()
        changed = not (os.path.isfile(archive) and _sha256_file(archive) == digest)
        if changed:
            partial = archive + ".partial"
            with open(partial, "wb") as handle:
                handle.write(data)
            os.rename(partial, archive)
        result.update(
            changed=changed,
            archive=archive,
            archive_sha256=digest,
            fingerprint=full,
            package_name=PACKAGE_NAME,
            package_version=package_version,
            source_version=version,
            patched_version=source_version,
            shape=shape,
            patches=[{"name": os.path.basename(p), "sha256": _sha256_file(p)} for p in patches],
            config={name: bool(value) for name, value in sorted(options.items())},
        )
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
