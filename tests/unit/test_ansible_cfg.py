"""ansible.cfg names only paths that exist in a checkout (after `make collection`)."""

import configparser
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PATH_KEYS = ("inventory", "collections_path", "roles_path", "library", "filter_plugins")


def test_every_path_in_ansible_cfg_exists():
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "ansible.cfg", encoding="utf-8")
    missing = [
        f"[defaults] {key} = {path}"
        for key in PATH_KEYS
        if config.has_option("defaults", key)
        for path in config.get("defaults", key).split(":")
        if not (REPO_ROOT / path).exists()
    ]
    assert missing == []
