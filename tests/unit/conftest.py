"""Shared plumbing for the unit tests.

- Puts .build/collections on sys.path so plugin code imports as
  ansible_collections.freifunk.wgmesh.plugins... (the link is made by `make collection`).
- ``vectors``: the parsed shared derivation vectors (tests/vectors/derivation.json), the
  file every runtime (filters, daemons) is tested against.
"""

import json
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS_PATH = REPO_ROOT / ".build" / "collections"
COLLECTION_LINK = COLLECTIONS_PATH / "ansible_collections" / "freifunk" / "wgmesh"
VECTORS_FILE = REPO_ROOT / "tests" / "vectors" / "derivation.json"

if not COLLECTION_LINK.is_dir():
    raise pytest.UsageError(f"{COLLECTION_LINK} is missing: run `make collection` (links this checkout there)")
if str(COLLECTIONS_PATH) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_PATH))


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
