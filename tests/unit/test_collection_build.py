"""`ansible-galaxy collection build` ships the collection, not a working tree's build junk.

Builds the tarball from a copy of this checkout into which the usual junk is planted (a venv,
caches, pip's src/build, egg-info, tests/output, an older tarball), then reads its file list.
"""

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_GALAXY = Path(sys.executable).with_name("ansible-galaxy")
JUNK = [
    ".venv/bin/python",
    ".build/collections/x",
    ".cache/x",
    ".pytest_cache/v/x",
    ".ruff_cache/x",
    "src/build/lib/wgmesh/x.py",
    "src/wgmesh.egg-info/PKG-INFO",
    "src/wgmesh/__pycache__/x.cpython-311.pyc",
    "tests/output/x",
    "freifunk-wgmesh-0.0.1.tar.gz",
]


def test_the_tarball_holds_no_build_junk(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(
        REPO_ROOT,
        tree,
        symlinks=True,
        # the checkout's own junk stays out of the copy; the planted kind goes in below
        ignore=shutil.ignore_patterns(".git", ".venv", ".build", ".*_cache", ".cache", "__pycache__", "*.egg-info"),
    )
    for junk in JUNK:
        (tree / junk).parent.mkdir(parents=True, exist_ok=True)
        (tree / junk).write_text("junk\n")
    out = tmp_path / "out"
    subprocess.run([ANSIBLE_GALAXY, "collection", "build", "--output-path", out, tree], check=True, capture_output=True)
    (tarball,) = out.glob("freifunk-wgmesh-*.tar.gz")
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert {"MANIFEST.json", "FILES.json", "meta/runtime.yml", "plugins/modules/wg_peers.py"} <= set(names)
    shipped_junk = sorted(
        name
        for name in names
        if any(name == j or name.startswith(j.rsplit("/", 1)[0] + "/") for j in JUNK) or "__pycache__" in name
    )
    assert shipped_junk == []
