"""Shared plumbing for the unit tests.

- Puts .build/collections on sys.path and installs Ansible's collection finder for it, so plugin
  code imports as ansible_collections.freifunk.wgmesh.plugins... and templates find the
  collection's filters (the link is made by `make collection`).
- ``vectors``: the parsed shared derivation vectors (tests/vectors/derivation.json), the
  file every runtime (filters, daemons) is tested against.
- ``netns``: an empty network namespace of the test's own (prefix ut-), for asking the
  real kernel what it accepts; removed even when the test fails.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.plugins.loader import init_plugin_loader

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS_PATH = REPO_ROOT / ".build" / "collections"
COLLECTION_LINK = COLLECTIONS_PATH / "ansible_collections" / "freifunk" / "wgmesh"
VECTORS_FILE = REPO_ROOT / "tests" / "vectors" / "derivation.json"

if not COLLECTION_LINK.is_dir():
    raise pytest.UsageError(f"{COLLECTION_LINK} is missing: run `make collection` (links this checkout there)")
if str(COLLECTIONS_PATH) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_PATH))
# Ansible's collection finder before any test imports ansible_collections.*: a plain import
# first would leave the package where a later Templar cannot find freifunk.wgmesh.* filters
# (the keepalived template tests failed after the plugin tests that way).
init_plugin_loader([str(COLLECTIONS_PATH)])


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def vectors():
    with VECTORS_FILE.open(encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def ansible_env():
    """Environment for ansible CLI runs against this checkout's collection."""
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO_ROOT / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


@pytest.fixture
def netns():
    if shutil.which("ip") is None:
        pytest.skip("iproute2 `ip` is not installed")
    name = "ut-%d-%s" % (os.getpid(), secrets.token_hex(3))
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip("cannot create a network namespace here: %s" % r.stderr.strip())
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
