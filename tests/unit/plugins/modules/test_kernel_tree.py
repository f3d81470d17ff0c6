"""kernel_tree: staging a source tree (unpack, patches in order, config, marker), run in-process.

The tree is a stand-in: a tarball with a Makefile whose config targets write and filter
.config, and a merge_config.sh that appends the fragments. The real tar and patch run; the
kernel's own Kconfig tools run in molecule/kernel-build.
"""

import json
import lzma
import os
import shutil
import tarfile
import textwrap

import pytest

from ansible_collections.freifunk.wgmesh.plugins.modules import kernel_tree

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("tar", "patch", "make")),
    reason="kernel_tree needs tar, patch and make on the host (hack/system-deps.txt)",
)

MAKEFILE = textwrap.dedent(
    """\
    VERSION = 6
    PATCHLEVEL = 1
    SUBLEVEL = 176
    EXTRAVERSION =
    NAME = Stand-in

    tinyconfig:
    \tprintf 'CONFIG_TINY=y\\nCONFIG_ARCH_$(ARCH)=y\\n' > .config

    # Like Kconfig, drops an option whose dependency is missing.
    olddefconfig:
    \tgrep -v '^CONFIG_UNMET=' .config > .config.new; mv .config.new .config
    """
)
MERGE = '#!/bin/sh\n# stand-in: -m -O DIR BASE FRAGMENT...\nout=$3; base=$4; shift 4; cat "$@" >> "$base"\n'
GREETING = "hello\n"
PATCH1 = textwrap.dedent(
    """\
    Subject: [PATCH 1/2] greet the mesh
    ---
    --- a/greeting.txt
    +++ b/greeting.txt
    @@ -1 +1,2 @@
     hello
    +mesh
    """
)
PATCH2 = textwrap.dedent(
    """\
    Subject: [PATCH 2/2] needs patch 1
    ---
    --- a/greeting.txt
    +++ b/greeting.txt
    @@ -1,2 +1,3 @@
     hello
     mesh
    +wgmesh
    """
)


@pytest.fixture
def work(tmp_path):
    src_dir = tmp_path / "src" / "linux-6.1.176"
    (src_dir / "scripts" / "kconfig").mkdir(parents=True)
    (src_dir / "Makefile").write_text(MAKEFILE)
    (src_dir / "greeting.txt").write_text(GREETING)
    (src_dir / "scripts" / "kconfig" / "merge_config.sh").write_text(MERGE)
    tarball = tmp_path / "linux.tar.xz"
    with tarfile.open(tarball, "w:xz") as tar:
        tar.add(src_dir, arcname="linux-6.1.176")
    files = tmp_path / "files"
    files.mkdir()
    (files / "0001-greet.patch").write_text(PATCH1)
    (files / "0002-more.patch").write_text(PATCH2)
    (files / "frag.config").write_text("CONFIG_FRAG=y\n")
    return tmp_path


def args(work, **changes):
    base = {
        "src": str(work / "linux.tar.xz"),
        "dest": str(work / "tree"),
        "id": "-wgmesh.00000001",
        "patches": [str(work / "files" / "0001-greet.patch"), str(work / "files" / "0002-more.patch")],
        "config": "tinyconfig",
        "config_fragments": [str(work / "files" / "frag.config")],
        "arch": "amd64",
    }
    base.update(changes)
    return base


def test_stages_patches_in_order_and_config(work, run_module):
    rc, result = run_module(kernel_tree.main, args(work))
    assert rc == 0, result
    assert result["changed"] is True
    assert result["kernelversion"] == "6.1.176"
    tree = work / "tree"
    assert (tree / "greeting.txt").read_text() == "hello\nmesh\nwgmesh\n"
    config = (tree / ".config").read_text().splitlines()
    # make got the kernel's ARCH for the Debian architecture, the fragment was merged.
    assert config == ["CONFIG_TINY=y", "CONFIG_ARCH_x86_64=y", "CONFIG_FRAG=y"]
    marker = json.loads((tree / ".wgmesh-tree.json").read_text())
    assert marker["id"] == "-wgmesh.00000001"
    assert marker["patches"] == ["0001-greet.patch", "0002-more.patch"]
    assert not list(tree.glob("*.orig")) and not list(tree.glob("*.rej"))


def test_second_run_changes_nothing(work, run_module):
    run_module(kernel_tree.main, args(work))
    build_product = work / "tree" / "vmlinux"
    build_product.write_text("built\n")
    rc, result = run_module(kernel_tree.main, args(work), diff=True)
    assert rc == 0, result
    assert result["changed"] is False
    assert result["kernelversion"] == "6.1.176"
    assert build_product.read_text() == "built\n"
    assert result["diff"]["before"] == result["diff"]["after"]


def test_check_mode_touches_nothing_and_says_what(work, run_module):
    rc, result = run_module(kernel_tree.main, args(work), check=True, diff=True)
    assert rc == 0, result
    assert result["changed"] is True
    assert result["kernelversion"] is None
    assert not (work / "tree").exists()
    assert result["diff"]["before"] == "absent\n"
    assert json.loads(result["diff"]["after"])["id"] == "-wgmesh.00000001"


def test_other_id_stages_again_from_scratch(work, run_module):
    run_module(kernel_tree.main, args(work))
    (work / "tree" / "stray").write_text("left over\n")
    rc, result = run_module(kernel_tree.main, args(work, id="-wgmesh.00000002", patches=args(work)["patches"][:1]))
    assert rc == 0, result
    assert result["changed"] is True
    assert not (work / "tree" / "stray").exists()
    assert (work / "tree" / "greeting.txt").read_text() == "hello\nmesh\n"


def test_patch_that_does_not_apply_fails_naming_it(work, run_module):
    bad = work / "files" / "0003-bad.patch"
    bad.write_text(PATCH1.replace("+mesh", "+other").replace(" hello", " goodbye"))
    rc, result = run_module(kernel_tree.main, args(work, patches=[*args(work)["patches"], str(bad)]))
    assert rc == 1
    assert result["failed"] is True
    assert result["msg"].startswith(
        "patch 3 of 3, %s, does not apply to %s after the patches before it:" % (bad, work / "linux.tar.xz")
    )
    assert "FAILED" in result["msg"]
    assert result["patch"] == str(bad)
    assert not (work / "tree" / ".wgmesh-tree.json").exists()
    # Nothing of the bad patch landed; the good ones did (the dry run came first).
    assert (work / "tree" / "greeting.txt").read_text() == "hello\nmesh\nwgmesh\n"
    # The next run with a good series starts over.
    rc, result = run_module(kernel_tree.main, args(work))
    assert rc == 0 and result["changed"] is True


def test_order_matters(work, run_module):
    patches = args(work)["patches"]
    rc, result = run_module(kernel_tree.main, args(work, patches=list(reversed(patches))))
    assert rc == 1
    assert result["msg"].startswith("patch 1 of 2, %s, does not apply to" % patches[1])


def test_fragment_option_that_does_not_survive_fails_naming_it(work, run_module):
    frag = work / "files" / "unmet.config"
    frag.write_text("CONFIG_UNMET=y\n")
    rc, result = run_module(kernel_tree.main, args(work, config_fragments=[str(frag)]))
    assert rc == 1
    assert "CONFIG_UNMET=y from %s, the .config has not set" % frag in result["msg"]
    assert result["missing"] == [{"fragment": str(frag), "option": "CONFIG_UNMET", "wanted": "y", "got": "not set"}]


def test_bad_fragment_line_fails_before_anything_changes(work, run_module):
    frag = work / "files" / "typo.config"
    frag.write_text("CONFIG_OK=y\nCONFIG_TYPO y\n")
    rc, result = run_module(kernel_tree.main, args(work, config_fragments=[str(frag)]))
    assert rc == 1
    assert "config fragment %s line 2 is not a kernel config line" % frag in result["msg"]
    assert not (work / "tree").exists()


def test_config_file_xz(work, run_module):
    config = work / "config.amd64_none_amd64.xz"
    with lzma.open(config, "wt") as handle:
        handle.write("CONFIG_DEBIAN=y\n")
    rc, result = run_module(kernel_tree.main, args(work, config=str(config), config_fragments=[]))
    assert rc == 0, result
    assert (work / "tree" / ".config").read_text() == "CONFIG_DEBIAN=y\n"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"src": "/nonexistent/linux.tar.xz"}, "src /nonexistent/linux.tar.xz does not exist on the target"),
        ({"patches": ["/nonexistent/1.patch"]}, "patch /nonexistent/1.patch does not exist on the target"),
        ({"config": "menu"}, "config 'menu' is neither a make target ending in 'config'"),
        ({"dest": "/nonexistent/dir/tree"}, "the parent directory /nonexistent/dir of dest does not exist"),
    ],
)
def test_bad_input_fails_clearly(work, run_module, changes, message):
    rc, result = run_module(kernel_tree.main, args(work, **changes))
    assert rc == 1
    assert message in result["msg"]


def test_not_a_kernel_tarball(work, run_module):
    empty = work / "empty"
    (empty / "top").mkdir(parents=True)
    tarball = work / "empty.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(empty / "top", arcname="top")
    rc, result = run_module(kernel_tree.main, args(work, src=str(tarball)))
    assert rc == 1
    assert "holds no Makefile under its top directory" in result["msg"]
    assert os.path.isdir(work / "tree")
