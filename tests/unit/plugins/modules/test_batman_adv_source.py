"""batman_adv_source on real files, a real local git repository, real `patch`, `make` and `cpp`.

The source is a tiny fake net/batman-adv (a main.h with the version define, a Kbuild
Makefile, a Kconfig), not the kernel's: the staging logic only reads those files.
"""

import gzip
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from ansible_collections.freifunk.wgmesh.plugins.module_utils import _batman_adv_source as src
from ansible_collections.freifunk.wgmesh.plugins.modules import batman_adv_source

GIT = shutil.which("git")
PATCH = shutil.which("patch")
MAKE = shutil.which("make")
CPP = shutil.which("cpp")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")
needs_patch = pytest.mark.skipif(PATCH is None, reason="patch is not installed (hack/system-deps.txt)")

MAIN_H = """/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _NET_BATMAN_ADV_MAIN_H_
#define _NET_BATMAN_ADV_MAIN_H_

#define BATADV_DRIVER_DEVICE "batman-adv"

#ifndef BATADV_SOURCE_VERSION
#define BATADV_SOURCE_VERSION "2022.3"
#endif

#define BATADV_TQ_MAX_VALUE 255
#endif
"""
KBUILD = """# SPDX-License-Identifier: GPL-2.0
obj-$(CONFIG_BATMAN_ADV) += batman-adv.o
batman-adv-y += main.o
batman-adv-$(CONFIG_BATMAN_ADV_BATMAN_V) += bat_v.o
batman-adv-$(CONFIG_BATMAN_ADV_NC) += network-coding.o
"""
KCONFIG = """config BATMAN_ADV
\ttristate "B.A.T.M.A.N. Advanced Meshing Protocol"
config BATMAN_ADV_BATMAN_V
\tbool "B.A.T.M.A.N. V protocol"
config BATMAN_ADV_NC
\tbool "Network Coding"
"""
# What the C code sees: one line per option, after the kernel's autoconf.h and wgmesh-config.h.
PROBE_C = """#ifdef CONFIG_BATMAN_ADV_BATMAN_V
seen BATMAN_V
#endif
#ifdef CONFIG_BATMAN_ADV_NC
seen NC
#endif
"""
OPTIONS = {"CONFIG_BATMAN_ADV_BATMAN_V": True, "CONFIG_BATMAN_ADV_NC": False}


def write_tree(root, release=False):
    base = Path(root)
    files = {
        "net/batman-adv/main.h": MAIN_H,
        "net/batman-adv/Makefile": KBUILD,
        "net/batman-adv/Kconfig": KCONFIG,
        "net/batman-adv/main.c": '#include "main.h"\n',
        "net/batman-adv/probe.c": PROBE_C,
    }
    if release:
        files["Makefile"] = "KERNELPATH ?= /lib/modules/$(shell uname -r)/build\nall:\n\t@echo release $(KERNELPATH)\n"
    for name, text in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text)
    return base


def make_tarball(tree, path, top="batman-adv-2022.3"):
    with tarfile.open(path, "w:gz") as archive:
        archive.add(tree, arcname=top)
    return path, "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def git(*args, cwd):
    argv = [GIT, "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)


def make_repo(tree, tag="v2022.3"):
    git("init", "-q", cwd=tree)
    git("add", "-A", cwd=tree)
    git("commit", "-q", "-m", "batman-adv", cwd=tree)
    git("tag", tag, cwd=tree)
    head = subprocess.run([GIT, "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True, check=True)
    return head.stdout.strip()


def diff(old_text, new_text, name="net/batman-adv/main.h"):
    """A unified diff made by the real diff tool (as a patch series would be)."""
    return "--- a/%s\n+++ b/%s\n%s" % (name, name, _hunks(old_text, new_text))


def _hunks(old_text, new_text):
    import difflib

    lines = difflib.unified_diff(old_text.splitlines(True), new_text.splitlines(True), n=3)
    return "".join(list(lines)[2:])


def params(**kw):
    base = {"kind": "path", "version": "2022.3", "patches": [], "config": dict(OPTIONS)}
    base.update(kw)
    return base


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "cache")


@pytest.fixture
def tree(tmp_path):
    return write_tree(tmp_path / "src")


@pytest.fixture
def served(tmp_path):
    """A real HTTP server on loopback serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(www), **k)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def opener(url):
    from ansible.module_utils.urls import open_url

    return open_url(url, timeout=10)


# --- the three source kinds ---------------------------------------------------------------


@needs_git
def test_tarball_git_and_path_give_the_same_fingerprint(tmp_path, tree, cache, served):
    www, base = served
    tarball, checksum = make_tarball(tree, www / "batman-adv-2022.3.tar.gz")
    by_path = src.stage(params(path=str(tree)), cache)
    commit = make_repo(tree)
    by_git = src.stage(params(kind="git", repo=str(tree), ref="v2022.3"), cache)
    by_url = src.stage(params(kind="tarball", url=base + "/batman-adv-2022.3.tar.gz", checksum=checksum), cache, opener)
    by_file = src.stage(params(kind="tarball", url=str(tarball), checksum=checksum), cache)

    assert by_git["commit"] == commit
    assert {r["fingerprint"] for r in (by_path, by_git, by_url, by_file)} == {by_path["fingerprint"]}
    assert {r["archive_sha256"] for r in (by_path, by_git, by_url, by_file)} == {by_path["archive_sha256"]}
    assert by_path["package_version"] == "2022.3+wgmesh." + by_path["fingerprint"][:12]
    # The same archive is already there: nothing is rewritten.
    assert by_path["changed"] is True and by_git["changed"] is False and by_url["changed"] is False


@needs_git
def test_a_pinned_commit_builds_from_the_cached_mirror_without_the_repository(tmp_path, tree, cache):
    commit = make_repo(tree)
    first = src.stage(params(kind="git", repo=str(tree), ref=commit), cache)
    shutil.rmtree(tree / ".git")
    again = src.stage(params(kind="git", repo=str(tree), ref=commit), cache)
    assert again["fingerprint"] == first["fingerprint"] and again["commit"] == commit


@needs_git
def test_an_unknown_git_ref_fails_naming_it(tree, cache):
    make_repo(tree)
    with pytest.raises(src.StageError, match=r"ref 'v9999' is not a commit, tag or branch"):
        src.stage(params(kind="git", repo=str(tree), ref="v9999"), cache)


def test_a_changed_mtime_or_mode_bit_other_than_x_changes_nothing(tree, cache):
    first = src.stage(params(path=str(tree)), cache)
    for path in tree.rglob("*"):
        os.utime(path, (1, 1))
    os.chmod(tree / "net/batman-adv/main.c", 0o664)
    again = src.stage(params(path=str(tree)), cache)
    assert again["fingerprint"] == first["fingerprint"] and again["changed"] is False


def test_a_changed_source_file_changes_the_fingerprint(tree, cache):
    first = src.stage(params(path=str(tree)), cache)
    (tree / "net/batman-adv/main.c").write_text('#include "main.h"\n/* changed */\n')
    assert src.stage(params(path=str(tree)), cache)["fingerprint"] != first["fingerprint"]


# --- tarballs -------------------------------------------------------------------------------


def test_a_checksum_mismatch_fails_and_caches_nothing(tmp_path, tree, cache):
    tarball, _checksum = make_tarball(tree, tmp_path / "b.tar.gz")
    wrong = "sha256:" + "0" * 64
    with pytest.raises(src.StageError, match=r"checksum mismatch for .*expected sha256:0{64}, got sha256:"):
        src.stage(params(kind="tarball", url=str(tarball), checksum=wrong), cache)
    assert os.listdir(os.path.join(cache, "tarballs")) == []


@pytest.mark.parametrize("checksum", [None, "", "md5:abc", "sha256:" + "A" * 64])
def test_a_tarball_without_a_sha256_checksum_fails(tmp_path, tree, cache, checksum):
    tarball, _checksum = make_tarball(tree, tmp_path / "b.tar.gz")
    with pytest.raises(src.StageError, match=r"needs checksum: sha256:<64 lowercase hex digits>"):
        src.stage(params(kind="tarball", url=str(tarball), checksum=checksum), cache)


def test_a_download_that_fails_says_so(cache, served):
    _www, base = served
    with pytest.raises(src.StageError, match=r"cannot download .*/missing.tar.gz"):
        src.stage(params(kind="tarball", url=base + "/missing.tar.gz", checksum="sha256:" + "0" * 64), cache, opener)


def test_a_tarball_without_a_top_directory_is_unpacked_as_it_is(tmp_path, tree, cache):
    flat = tmp_path / "flat.tar"
    with tarfile.open(flat, "w") as archive:
        archive.add(tree / "net", arcname="net")
    checksum = "sha256:" + hashlib.sha256(flat.read_bytes()).hexdigest()
    staged = src.stage(params(kind="tarball", url=str(flat), checksum=checksum), cache)
    assert staged["fingerprint"] == src.stage(params(path=str(tree)), cache)["fingerprint"]


# --- version and patches -------------------------------------------------------------------------


def test_the_pinned_version_is_checked_before_the_patches(tmp_path, tree, cache):
    with pytest.raises(src.StageError, match=r"the source is batman-adv 2022.3 .*not the pinned 2023.1"):
        src.stage(params(path=str(tree), version="2023.1"), cache)


@needs_patch
def test_a_patch_that_changes_the_version_string_is_in_the_package_and_module_version(tmp_path, tree, cache):
    patch = tmp_path / "0001-version.patch"
    patch.write_text(diff(MAIN_H, MAIN_H.replace('"2022.3"', '"2022.3-wgtest"')))
    staged = src.stage(params(path=str(tree), patches=[str(patch)]), cache)
    assert staged["patched_version"] == "2022.3-wgtest"
    assert staged["package_version"] == "2022.3-wgtest+wgmesh." + staged["fingerprint"][:12]
    members = unpack(staged["archive"])
    top = "batman-adv-" + staged["package_version"]
    assert '#define BATADV_SOURCE_VERSION "%s"' % staged["package_version"] in members[top + "/net/batman-adv/main.h"]
    assert 'PACKAGE_VERSION="%s"' % staged["package_version"] in members[top + "/dkms.conf"]
    digest = hashlib.sha256(patch.read_bytes()).hexdigest()
    assert members[top + "/WGMESH-PATCHES"] == "%s  0001-version.patch\n" % digest
    assert staged["patches"] == [{"name": "0001-version.patch", "sha256": digest}]


@needs_patch
def test_patch_order_matters(tmp_path, tree, cache):
    step1 = MAIN_H.replace("BATADV_TQ_MAX_VALUE 255", "BATADV_TQ_MAX_VALUE 254")
    step2 = step1.replace("BATADV_TQ_MAX_VALUE 254", "BATADV_TQ_MAX_VALUE 253")
    first = tmp_path / "0001-first.patch"
    second = tmp_path / "0002-second.patch"
    first.write_text(diff(MAIN_H, step1))
    second.write_text(diff(step1, step2))
    staged = src.stage(params(path=str(tree), patches=[str(first), str(second)]), cache)
    top = "batman-adv-" + staged["package_version"]
    assert "BATADV_TQ_MAX_VALUE 253" in unpack(staged["archive"])[top + "/net/batman-adv/main.h"]
    with pytest.raises(src.StageError, match=r"patch 1 of 2, 0002-second.patch, does not apply"):
        src.stage(params(path=str(tree), patches=[str(second), str(first)]), cache)


@needs_patch
def test_a_failing_patch_names_itself_and_shows_patchs_output(tmp_path, tree, cache):
    good = tmp_path / "0001-good.patch"
    good.write_text(diff(MAIN_H, MAIN_H.replace("255", "254")))
    bad = tmp_path / "0002-bad.patch"
    bad.write_text(diff(MAIN_H.replace("_MAIN_H_", "_OTHER_H_"), MAIN_H.replace("_MAIN_H_", "_NEW_H_")))
    with pytest.raises(src.StageError) as failed:
        src.stage(params(path=str(tree), patches=[str(good), str(bad)]), cache)
    message = str(failed.value)
    assert "patch 2 of 2, 0002-bad.patch, does not apply" in message
    assert "FAILED" in message  # patch's own words: "Hunk #1 FAILED at 1."


@needs_patch
def test_an_already_applied_patch_fails_instead_of_reversing(tmp_path, tree, cache):
    patch = tmp_path / "0001.patch"
    patch.write_text(diff(MAIN_H, MAIN_H.replace("255", "254")))
    (tree / "net/batman-adv/main.h").write_text(MAIN_H.replace("255", "254"))
    with pytest.raises(src.StageError, match=r"0001.patch, does not apply"):
        src.stage(params(path=str(tree), patches=[str(patch)]), cache)


@needs_patch
def test_changing_the_patch_set_changes_the_fingerprint(tmp_path, tree, cache):
    patch = tmp_path / "0001.patch"
    patch.write_text(diff(MAIN_H, MAIN_H.replace("255", "254")))
    plain = src.stage(params(path=str(tree)), cache)
    patched = src.stage(params(path=str(tree), patches=[str(patch)]), cache)
    assert plain["fingerprint"] != patched["fingerprint"]


def test_a_missing_patch_file_fails_naming_it(tmp_path, tree, cache):
    with pytest.raises(src.StageError, match=r"patch .*/nope.patch is not a file on the controller"):
        src.stage(params(path=str(tree), patches=[str(tmp_path / "nope.patch")]), cache)


def test_a_version_with_characters_dkms_cannot_take_fails(tmp_path, tree, cache):
    (tree / "net/batman-adv/main.h").write_text(MAIN_H.replace('"2022.3"', '"2022 3"'))
    with pytest.raises(src.StageError, match=r"a DKMS version allows only"):
        src.stage(params(path=str(tree), version="2022 3"), cache)


# --- shapes and build files -----------------------------------------------------------------------


def test_shapes_are_recognized(tmp_path):
    assert src.detect_shape(str(write_tree(tmp_path / "a"))) == "in-tree"
    assert src.detect_shape(str(write_tree(tmp_path / "b", release=True))) == "release"
    odd = write_tree(tmp_path / "c")
    (odd / "Makefile").write_text("all:\n\ttrue\n")
    with pytest.raises(src.StageError, match=r"top-level Makefile that does not take KERNELPATH"):
        src.detect_shape(str(odd))
    (odd / "Makefile").unlink()
    (odd / "net/batman-adv/Makefile").write_text("all:\n")
    with pytest.raises(src.StageError, match=r"is not the kernel's Kbuild file"):
        src.detect_shape(str(odd))
    with pytest.raises(src.StageError, match=r"not a batman-adv source"):
        src.detect_shape(str(tmp_path))


def test_a_release_keeps_its_makefile_and_gets_the_options_through_wgmesh_mk(tmp_path, cache):
    release = write_tree(tmp_path / "rel", release=True)
    staged = src.stage(params(path=str(release)), cache)
    top = "batman-adv-" + staged["package_version"]
    members = unpack(staged["archive"])
    assert staged["shape"] == "release"
    assert members[top + "/Makefile"] == (release / "Makefile").read_text()
    assert "OPTIONS := CONFIG_BATMAN_ADV_BATMAN_V=y CONFIG_BATMAN_ADV_NC=n" in members[top + "/wgmesh.mk"]
    assert 'MAKE[0]="make -f wgmesh.mk KERNELPATH=${kernel_source_dir}"' in members[top + "/dkms.conf"]


def test_unknown_option_names_fail_with_the_known_ones(tree, cache):
    message = r"unknown batman-adv option\(s\) CONFIG_BATMAN_ADV_BOGUS; this source knows"
    with pytest.raises(src.StageError, match=message):
        src.stage(params(path=str(tree), config={"CONFIG_BATMAN_ADV_BOGUS": True}), cache)


def test_options_change_the_fingerprint(tree, cache):
    a = src.stage(params(path=str(tree)), cache)
    b = src.stage(params(path=str(tree), config=dict(OPTIONS, CONFIG_BATMAN_ADV_NC=True)), cache)
    assert a["fingerprint"] != b["fingerprint"]


def test_a_source_that_already_has_a_generated_file_fails(tree, cache):
    (tree / "dkms.conf").write_text("PACKAGE_NAME=x\n")
    with pytest.raises(src.StageError, match=r"already has dkms.conf"):
        src.stage(params(path=str(tree)), cache)


@pytest.mark.skipif(MAKE is None or CPP is None, reason="make and cpp are needed to run the generated Makefile")
def test_the_in_tree_makefile_gives_kbuild_and_the_c_code_the_same_options(tmp_path, tree, cache):
    """The generated Makefile against a stand-in for the kernel's build directory.

    The stand-in reads net/batman-adv/Makefile as kbuild does and preprocesses probe.c the way
    kbuild orders it: the kernel's autoconf.h (which, like Debian's, turns NC on) first, then
    KCFLAGS. NC is off in the options: neither the object list nor the C code may have it.
    """
    kernel = tmp_path / "kernel"
    kernel.mkdir()
    (kernel / "autoconf.h").write_text(
        "#define CONFIG_BATMAN_ADV_MODULE 1\n#define CONFIG_BATMAN_ADV_BATMAN_V 1\n#define CONFIG_BATMAN_ADV_NC 1\n"
    )
    (kernel / "Makefile").write_text(
        "include $(M)/Makefile\n"
        "modules:\n"
        "\t@echo objects: $(sort $(batman-adv-y))\n"
        "\t@%s -P -include %s/autoconf.h $(KCFLAGS) $(M)/probe.c | grep seen\n" % (CPP, kernel)
    )
    staged = src.stage(params(path=str(tree)), cache)
    out = tmp_path / "out"
    out.mkdir()
    with tarfile.open(staged["archive"]) as archive:
        archive.extractall(out, filter="data")
    built = out / ("batman-adv-" + staged["package_version"])
    run = subprocess.run([MAKE, "-s", "KERNELPATH=%s" % kernel], cwd=built, capture_output=True, text=True, check=True)
    assert run.stdout.splitlines() == ["objects: bat_v.o main.o", "seen BATMAN_V"]
    header = (built / "wgmesh-config.h").read_text()
    assert "#undef CONFIG_BATMAN_ADV_NC\n" in header and "#define CONFIG_BATMAN_ADV_NC" not in header

    with_nc = subprocess.run(
        [MAKE, "-s", "KERNELPATH=%s" % kernel, "CONFIG_BATMAN_ADV_NC=y"],
        cwd=built,
        capture_output=True,
        text=True,
        check=True,
    )
    assert with_nc.stdout.splitlines() == ["objects: bat_v.o main.o network-coding.o", "seen BATMAN_V", "seen NC"]


# --- deterministic archives ---------------------------------------------------------------------


def unpack(path):
    with tarfile.open(path) as archive:
        return {m.name: archive.extractfile(m).read().decode() for m in archive.getmembers() if m.isfile()}


def test_the_archive_is_deterministic(tmp_path, tree):
    one = src.stage(params(path=str(tree)), str(tmp_path / "c1"))
    two = src.stage(params(path=str(tree)), str(tmp_path / "c2"))
    assert Path(one["archive"]).read_bytes() == Path(two["archive"]).read_bytes()
    with tarfile.open(one["archive"]) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {m.mode for m in members if m.isfile()} == {0o644}
    # gzip header: no file name, mtime 0.
    raw = Path(one["archive"]).read_bytes()
    assert raw[3] == 0 and raw[4:8] == b"\0\0\0\0"
    assert gzip.decompress(raw)  # a valid gzip stream


def test_the_fingerprint_is_the_sha256_of_the_tar_before_the_stamp(tree, cache):
    staged = src.stage(params(path=str(tree)), cache)
    with tarfile.open(staged["archive"]) as archive:
        top = "batman-adv-" + staged["package_version"] + "/"
        buf = io.BytesIO()
        # Rebuild the pre-stamp tree from the archive: main.h with the plain version, no dkms.conf.
        tmp = Path(cache) / "rebuild"
        archive.extractall(tmp, filter="data")
    tree2 = tmp / top.rstrip("/")
    (tree2 / "dkms.conf").unlink()
    main_h = tree2 / "net/batman-adv/main.h"
    main_h.write_text(main_h.read_text().replace(staged["package_version"], "2022.3"))
    buf.write(src.deterministic_tar(str(tree2)))
    assert hashlib.sha256(buf.getvalue()).hexdigest() == staged["fingerprint"]


# --- the module -----------------------------------------------------------------------------------


def test_the_module_in_check_mode_reports_the_build_and_writes_nothing(tmp_path, tree, run_module):
    cache = tmp_path / "cache"
    args = {"kind": "path", "path": str(tree), "version": "2022.3", "cache_dir": str(cache), "config": OPTIONS}
    code, result = run_module(batman_adv_source.main, args, check=True)
    assert code == 0 and result["changed"] is True
    assert result["package_version"].startswith("2022.3+wgmesh.")
    assert not Path(result["archive"]).exists()
    code, real = run_module(batman_adv_source.main, args)
    assert code == 0 and real["changed"] is True and Path(real["archive"]).is_file()
    assert real["fingerprint"] == result["fingerprint"]
    code, again = run_module(batman_adv_source.main, args, check=True)
    assert again["changed"] is False


def test_the_module_fails_with_the_staging_message(tmp_path, tree, run_module):
    args = {"kind": "tarball", "url": str(tmp_path / "x.tar.gz"), "version": "2022.3", "cache_dir": str(tmp_path)}
    code, result = run_module(batman_adv_source.main, args)
    assert code == 1 and result["msg"] == "kind=tarball needs checksum"
